"""The cost of constrained decoding: decode tokens/s of the same prompt on the same model
with a JSON-Schema grammar and without one, in one run.

    python bench/grammar.py [--tokens 128] [--rounds 3]

Through the server (streamed chat, timed from the first token to the last, so that the
prompt's evaluation is left out) and, for comparison, in-process with llama-cpp-python's
own grammar support, which filters the whole vocabulary at every step."""

from __future__ import annotations

import argparse
import statistics
import time

from common import gemma_server, sse_chunks

PROMPT = "A long description of the city of Paris, its history, its people, its food and its famous places:\n\n"
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "facts": {"type": "array", "items": {"type": "string"}, "minItems": 12},
    },
    "required": ["city", "facts"],
}
# The prompt as it is, with no stop word, so that both runs go on to the token limit.
YAML = "context_size: 1024\nthreads: 2\ntemplate:\n  chat: \"{{ messages[-1].content }}\"\n"


def server_rate(url: str, tokens: int, constrained: bool) -> tuple[int, float]:
    body = {"model": "bench", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}
    first = last = None
    produced = 0
    for chunk in sse_chunks(url, "/v1/chat/completions", body, timeout=300):
        if chunk.get("usage"):
            produced = chunk["usage"]["completion_tokens"]
        elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            last = time.perf_counter()
            first = first or last
    return produced, (produced - 1) / (last - first)


def inprocess_rate(llm, tokens: int, grammar) -> tuple[int, float]:
    import llama_cpp

    prompt = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
    first = last = None
    produced = 0
    for token in llm.generate(prompt, temp=0, grammar=grammar, reset=True):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or produced >= tokens:
            break
        produced += 1
        last = time.perf_counter()
        first = first or last
    llm.reset()
    return produced, (produced - 1) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    from localhost_ai.backends.llama_tools import response_format_grammar

    rates: dict[str, list[float]] = {"server free": [], "server grammar": [], "llama-cpp-python free": [],
                                     "llama-cpp-python grammar": []}
    counts: dict[str, int] = {}
    with gemma_server(YAML) as server:
        server_rate(server.url, 8, False)  # load the model
        llm = llama_cpp.Llama(str(server.weights), n_ctx=1024, n_threads=2, verbose=False)
        grammar = LlamaGrammar.from_string(response_format_grammar({"type": "json_schema", "schema": SCHEMA}),
                                           verbose=False)
        for _ in range(args.rounds):
            for name, run in (
                ("server free", lambda: server_rate(server.url, args.tokens, False)),
                ("server grammar", lambda: server_rate(server.url, args.tokens, True)),
                ("llama-cpp-python free", lambda: inprocess_rate(llm, args.tokens, None)),
                ("llama-cpp-python grammar", lambda: inprocess_rate(llm, args.tokens, grammar)),
            ):
                produced, rate = run()
                counts[name] = produced
                rates[name].append(rate)
        llm.close()
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        print(f"{name:26s} {value:6.1f} tok/s  ({counts[name]} tokens; rounds: "
              + ", ".join(f"{v:.1f}" for v in rates[name]) + ")")
    print(f"server: grammar / free = {median['server grammar'] / median['server free']:.2f}")
    print(f"llama-cpp-python: grammar / free = "
          f"{median['llama-cpp-python grammar'] / median['llama-cpp-python free']:.2f}")


if __name__ == "__main__":
    main()
