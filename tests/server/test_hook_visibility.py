"""`/hooks/{provider}` over real HTTP does not tell an outsider whether a private repository exists:
a delivery that is not signed with its secret gets, word for word, what a delivery for a repository
that is not configured gets, whether it names it in ``?repo=`` or in the payload. A delivery signed
with its secret, and a signed-in viewer, still get the precise answers."""

from __future__ import annotations

import json

from tests.server import payloads as p
from tests.server.people import ENV, USERS, bearer
from tests.server.test_webhooks import SHA, deliveries

PUBLIC_SECRET, CLOSED_SECRET = "public-hook-secret", "closed-hook-secret"


async def hooks_server(server):
    def repo(name: str, **extra) -> dict:
        return {"name": name, "provider": "github", "url": f"https://github.com/{name}.git", **extra}

    return await server([
        repo("acme/web", secret=PUBLIC_SECRET),
        repo("acme/closed", secret=CLOSED_SECRET, visibility="private"),
        repo("acme/anyone"),  # no secret: takes deliveries from anyone
    ], paused=True, users=USERS, env=ENV)


async def answer(client, full_name: str, secret: str | None, query: str = "", headers: dict | None = None,
                 body: bytes | None = None) -> tuple[int, str]:
    body = body if body is not None else p.body_of(p.github_push(full_name, SHA))
    sent = await client.post(f"/hooks/github{query}", data=body,
                             headers={**p.github_headers(body, secret), **(headers or {})})
    return sent.status, await sent.text()


async def test_an_outsider_cannot_tell_a_private_repository_from_a_missing_one(server):
    client = await hooks_server(server)
    ways = {
        "named, unsigned": lambda name: answer(client, name, None, f"?repo={name}"),
        "named, signed for another repository": lambda name: answer(client, name, PUBLIC_SECRET, f"?repo={name}"),
        "in the payload, signed for another repository": lambda name: answer(client, name, PUBLIC_SECRET),
        "in the payload, unsigned (a repository takes any)": lambda name: answer(client, name, None),
    }
    for way, send in ways.items():
        private, missing = await send("acme/closed"), await send("acme/nope")
        assert private[0] == missing[0] == 404, (way, private, missing)
        assert private[1] == missing[1].replace("acme/nope", "acme/closed"), (way, private, missing)
    # A public repository's existence is no secret: its bad signature is said as such.
    status, text = await answer(client, "acme/web", None, "?repo=acme/web")
    assert status == 401 and "signature" in json.loads(text)["error"]
    # A forge's own Authorization header (Gitea can send one) is nobody's token: still the same answer.
    odd = await answer(client, "acme/closed", None, "?repo=acme/closed", {"Authorization": "Bearer forge-thing"})
    assert odd == await answer(client, "acme/nope", None, "?repo=acme/closed", {"Authorization": "Bearer forge-thing"})
    assert await deliveries(client) == []


async def test_a_signed_delivery_or_a_viewer_gets_the_precise_answers(server):
    client = await hooks_server(server)
    # A viewer who may read the private repository learns what is wrong with the delivery.
    status, text = await answer(client, "acme/closed", PUBLIC_SECRET, "?repo=acme/closed", bearer("viewer"))
    assert status == 401 and "bad or missing signature" in json.loads(text)["error"], text
    status, text = await answer(client, "acme/closed", PUBLIC_SECRET, headers=bearer("viewer"))
    assert (status, json.loads(text)["error"]) == (
        401, "the signature does not match the secret configured for acme/closed")
    # Signed with its own secret: malformed payloads are named, and a good one is stored.
    bad = p.github_push("acme/closed", SHA)
    bad["head_commit"]["message"] = ["not", "text"]
    status, text = await answer(client, "acme/closed", CLOSED_SECRET, "?repo=acme/closed", body=p.body_of(bad))
    assert status == 400 and json.loads(text)["error"].startswith("head_commit.message must be a string"), text
    status, text = await answer(client, "acme/closed", CLOSED_SECRET, "?repo=acme/closed")
    assert status == 202, text
    assert [r["repo"] for r in await deliveries(client)] == ["acme/closed"]
