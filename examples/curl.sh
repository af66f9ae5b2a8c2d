#!/usr/bin/env bash
# Every endpoint by curl, against `localhost-ai serve --demo`.
set -euo pipefail
URL=${URL:-http://127.0.0.1:8080}
AUTH=()
[ -n "${API_KEY:-}" ] && AUTH=(-H "Authorization: Bearer $API_KEY")

curl -s "${AUTH[@]}" "$URL/v1/models"; echo
curl -s "${AUTH[@]}" "$URL/v1/models/gemma-3-270m"; echo
curl -s "${AUTH[@]}" "$URL/v1/chat/completions" \
  -d '{"model": "gemma-3-270m", "messages": [{"role": "user", "content": "What is the capital of France?"}]}'; echo
curl -sN "${AUTH[@]}" "$URL/v1/chat/completions" \
  -d '{"messages": [{"role": "user", "content": "Name a colour."}], "stream": true, "stream_options": {"include_usage": true}}'; echo
curl -s "${AUTH[@]}" "$URL/v1/completions" \
  -d '{"prompt": "Question: What is the capital of Japan?\nAnswer:", "max_tokens": 8, "stop": ["\n"]}'; echo
curl -s "${AUTH[@]}" "$URL/v1/edits" \
  -d '{"instruction": "Fix the spelling.", "input": "The captial of France is Paris.", "max_tokens": 16}'; echo
curl -s "$URL/readyz"; echo
