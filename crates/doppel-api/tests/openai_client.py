"""The official `openai` Python client against Doppel's /v1/chat/completions (run by api.rs)."""
import json
import os

import openai

url, token = os.environ["DOPPEL_API_URL"], os.environ["DOPPEL_API_TOKEN"]
client = openai.OpenAI(base_url=url, api_key=token, max_retries=0, timeout=60)
question = [{"role": "user", "content": "When did the tomatoes go in?"}]
whole = client.chat.completions.create(model="doppel-twin", messages=question)
streamed = "".join(
    chunk.choices[0].delta.content or ""
    for chunk in client.chat.completions.create(model="doppel-twin", messages=question, stream=True)
    if chunk.choices
)
models = [m.id for m in client.models.list()]
try:
    openai.OpenAI(base_url=url, api_key="dpl_wrong", max_retries=0).models.list()
    refused = None
except openai.AuthenticationError as e:
    refused = type(e).__name__
print(json.dumps({
    "whole": whole.choices[0].message.content,
    "streamed": streamed,
    "models": models,
    "refused": refused,
}))
