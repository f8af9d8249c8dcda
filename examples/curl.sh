#!/usr/bin/env bash
# Ask the demo model, through its `shout` adapter, for a chat completion (not streamed).
# Usage: examples/curl.sh [BASE_URL]   (default http://127.0.0.1:8000/v1)
set -euo pipefail
BASE_URL="${1:-${OPENLORA_BASE_URL:-http://127.0.0.1:8000/v1}}"
curl -sS --fail-with-body "$BASE_URL/chat/completions" \
  -H 'content-type: application/json' \
  -d '{
    "model": "tiny-shakespeare:shout",
    "messages": [
      {"role": "system", "content": "You are a player in a Shakespeare play."},
      {"role": "user", "content": "ROMEO:\nBut soft, what light through yonder window breaks?"}
    ],
    "max_tokens": 48,
    "temperature": 0.8,
    "seed": 7
  }'
echo
