"""Every text endpoint through the official `openai` client, against `localhost-ai serve --demo`."""

import os

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("BASE_URL", "http://127.0.0.1:8080/v1"), api_key=os.environ.get("API_KEY", "none"))

print([m.id for m in client.models.list().data])

reply = client.chat.completions.create(
    model="gemma-3-270m", messages=[{"role": "user", "content": "What is the capital of France?"}]
)
print(reply.choices[0].message.content, reply.usage)

for chunk in client.chat.completions.create(
    model="gemma-3-270m", messages=[{"role": "user", "content": "Name a colour."}], stream=True
):
    print(chunk.choices[0].delta.content or "", end="", flush=True)
print()

completion = client.completions.create(
    model="gemma-3-270m", prompt="Question: What is the capital of Japan?\nAnswer:", max_tokens=8, stop=["\n"]
)
print(completion.choices[0].text)
