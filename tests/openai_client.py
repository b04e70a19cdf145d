"""The official `openai` package as a real client of the app's OpenAI face.

Run by tests/e2e/openai.rs, one phase per run (the Rust test sets the fake
LLM up between them):

    python openai_client.py <phase> <base url> <api key> <expected answer>

Phases: `ok` (completions, streaming, the cache, embeddings, 4xx errors),
`rate-limited` (the provider answers 429), `provider-down` (it answers 500).
An assertion that fails exits non-zero with the reason.
"""

import sys

import openai

phase, base_url, key, expected = sys.argv[1:5]
# The client's own retries off: each error below is the app's first answer.
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)


def ask(prompt, **kwargs):
    return client.chat.completions.create(
        model="any-model", messages=[{"role": "user", "content": prompt}], **kwargs
    )


def raises(kind, call):
    try:
        call()
    except kind as e:
        print(f"{kind.__name__}: {e}")
        return e
    raise AssertionError(f"expected {kind.__name__}")


if phase == "ok":
    first = ask("What is the tallest mountain on Earth?")
    assert first.object == "chat.completion", first
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].message.content == expected, first.choices[0].message.content
    assert first.choices[0].finish_reason == "stop"
    assert first.model, first
    assert first.aies["cached"] is False, first.aies

    again = ask("What is the tallest mountain on Earth?")
    assert again.choices[0].message.content == expected
    assert again.aies["cached"] is True and again.aies["tier"] == "exact", again.aies

    with_system = client.chat.completions.create(
        model="any-model",
        messages=[
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour of the sky"}]},
        ],
        temperature=0.3,
        max_tokens=20,
    )
    assert with_system.choices[0].message.content, with_system

    stream = ask("How many continents are there?", stream=True)
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks), chunks
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text, chunks
    assert chunks[-1].choices[0].finish_reason == "stop", chunks[-1]
    assert len({c.id for c in chunks}) == 1

    floats = client.embeddings.create(
        model="any", input=["The cat sat on the mat", "Le chat"], encoding_format="float"
    )
    assert [d.index for d in floats.data] == [0, 1]
    assert len(floats.data[0].embedding) == 384, len(floats.data[0].embedding)
    assert floats.usage.prompt_tokens > 0, floats.usage
    # The package asks for base64 by default and decodes it.
    decoded = client.embeddings.create(model="any", input="The cat sat on the mat")
    assert len(decoded.data[0].embedding) == 384
    assert max(abs(a - b) for a, b in zip(decoded.data[0].embedding, floats.data[0].embedding)) < 1e-6

    raises(openai.BadRequestError, lambda: client.chat.completions.create(model="m", messages=[]))
    raises(openai.BadRequestError, lambda: ask("two answers please", n=2))
    raises(openai.BadRequestError, lambda: client.embeddings.create(model="any", input=[]))
    raises(
        openai.AuthenticationError,
        lambda: openai.OpenAI(base_url=base_url, api_key="aies_wrong", max_retries=0).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        ),
    )
    other_tenant = openai.OpenAI(
        base_url=base_url, api_key=key, max_retries=0, default_headers={"x-tenant-id": "someone-else"}
    )
    raises(openai.PermissionDeniedError, lambda: other_tenant.embeddings.create(model="any", input="x"))
    raises(openai.NotFoundError, lambda: client.models.list())
elif phase == "rate-limited":
    e = raises(openai.RateLimitError, lambda: ask("Is this call rate limited?"))
    assert e.status_code == 429
elif phase == "provider-down":
    e = raises(openai.InternalServerError, lambda: ask("Is the provider down?"))
    assert e.status_code == 502, e.status_code
else:
    raise SystemExit(f"unknown phase {phase}")
print(f"{phase}: ok")
