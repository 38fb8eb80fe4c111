#!/usr/bin/env python3
"""An example troc bot: it offers something and reacts to the wants that match it.

Standard library only; it uses the node's local API (docs/api.md) like the `troc` command does.
1. Finds the node: `<home>/api.json` (its address) and `<home>/api.token`, the home being --home,
   else $TROC_HOME, else $XDG_DATA_HOME/troc or ~/.local/share/troc. --api URL and --token override.
2. Publishes one offer (default: lend an aluminium ladder), unless the same person already has a
   live listing of that kind and title: a restarted bot does not publish duplicates.
3. Follows `GET /v1/events?types=listing_new&kind=want` (Server-Sent Events, parsed by hand), after
   one look at the wants the node already knows (`GET /v1/search?kind=want`).
4. A want (of someone else, each handled once) matches when it shares a word with the offer's title
   or tags (3 letters or more, a final "s" ignored). The reaction is one JSON line on stdout,
   {"matched": "<want id>", "offer": "<offer id>", "title": ..., "author": ..., "words": [...]},
   for a person or a program to act on. Nothing is published in reply: a public listing per want
   would be noise for the community, and a private answer is a deal proposal, which comes with
   deals (a later issue). `react()` is the place to do more.
Before following, it prints {"ready": true, "offer": "<offer id>", "words": [...]}. Exit codes: 0
after --max-matches matches, at --timeout without --max-matches, or when the node shuts down; 1 on
other errors (a refused token, --timeout before --max-matches ...); 2 bad arguments; 3 no node.
Example: TROC_HOME=~/.local/share/troc python3 examples/bot.py --title "Cordless drill" --tag drill
"""

import argparse
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

WORD = re.compile(r"[^\W_]+")


class Fail(Exception):
    """An error for the user, with the exit code."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def words(*texts):
    """The words that count for matching: lower case, 3 letters or more, without a final 's'."""
    out = set()
    for text in texts:
        for w in WORD.findall(text.lower()):
            if len(w) >= 3:
                out.add(w[:-1] if len(w) > 3 and w.endswith("s") else w)
    return out


class Node:
    """The local API of one node: base URL and token."""

    def __init__(self, args):
        home = args.home or os.environ.get("TROC_HOME") or os.path.join(
            os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "troc")
        self.url, self.token = args.api, args.token
        if not self.url:
            try:
                with open(os.path.join(home, "api.json")) as f:
                    self.url = "http://" + json.load(f)["address"]
            except FileNotFoundError:
                raise Fail(f"no node is running from {home} (no api.json): start it with `troc up`", 3)
            except (OSError, ValueError, KeyError) as e:
                raise Fail(f"cannot read {home}/api.json: {e}")
        if not self.token:
            try:
                with open(os.path.join(home, "api.token")) as f:
                    self.token = f.read().strip()
            except OSError as e:
                raise Fail(f"cannot read the API token: {e}")

    def open(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            try:
                err = json.load(e)["error"]
                detail = f"{err['message']} ({err['code']})"
            except (ValueError, KeyError, TypeError):
                detail = f"HTTP {e.code}"
            if e.code == 401:
                raise Fail(f"the node refused the token: {detail}")
            raise Fail(f"{method} {path}: {detail}")
        except (urllib.error.URLError, ConnectionError, socket.timeout) as e:
            raise Fail(f"the node at {self.url} does not answer ({getattr(e, 'reason', e)}): is it running?", 3)

    def call(self, method, path, body=None):
        with self.open(method, path, body) as resp:
            return json.load(resp)


def sse(resp, deadline):
    """Yields (event, data) from a Server-Sent Events stream; returns when it ends or at the deadline."""
    event, data = None, []
    while deadline is None or time.monotonic() < deadline:
        try:
            line = resp.readline()
        except socket.timeout:  # the read timeout was set to end at the deadline (see main)
            if deadline is not None and time.monotonic() >= deadline - 1:
                return
            raise Fail("the node sent nothing, not even a keep-alive, for 60 s")
        if not line:
            return
        line = line.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = None, []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)


def react(listing, offer, common):
    print(json.dumps({"matched": listing["id"], "offer": offer["id"], "title": listing["title"],
                      "author": listing["author"].get("name") or listing["author"]["peer_id"],
                      "words": sorted(common)}), flush=True)


def main():
    p = argparse.ArgumentParser(description="Offer something and react to matching wants.")
    p.add_argument("--home", help="the node's home (default: $TROC_HOME)")
    p.add_argument("--api", help="the API's base URL, e.g. http://127.0.0.1:7711 (default: from api.json)")
    p.add_argument("--token", help="the API token (default: from <home>/api.token)")
    p.add_argument("--kind", default="lend", choices=["lend", "share", "swap", "barter", "give"])
    p.add_argument("--title", default="Aluminium ladder, 3 m")
    p.add_argument("--category", default="tools")
    p.add_argument("--description", default="Light and sturdy; ask the bot's owner.")
    p.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    p.add_argument("--in-return", default="", help="what is wanted in return (swap and barter)")
    p.add_argument("--max-matches", type=int, help="exit 0 after this many matches")
    p.add_argument("--timeout", type=float, help="give up after this many seconds")
    args = p.parse_args()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout

    node = Node(args)
    body = {"kind": args.kind, "category": args.category, "title": args.title, "description": args.description,
            "tags": args.tag, "terms": {"in_return": args.in_return} if args.in_return else {}}
    mine = node.call("GET", "/v1/mine")["listings"]
    same = (x for x in mine if x["kind"] == args.kind and x["title"] == args.title)
    offer = next(same, None) or node.call("POST", "/v1/listings", body)
    wanted = words(offer["title"], *offer.get("tags", []))

    # Each read may wait 60 s (the server sends a keep-alive every 15 s), or until the deadline.
    read_timeout = 60 if deadline is None else max(0.1, min(60, deadline - time.monotonic()))
    stream = node.open("GET", "/v1/events?types=listing_new&kind=want", timeout=read_timeout)
    known = node.call("GET", "/v1/search?" + urllib.parse.urlencode({"kind": "want", "limit": 200}))["listings"]
    print(json.dumps({"ready": True, "offer": offer["id"], "words": sorted(wanted)}), flush=True)

    seen, matches = set(), 0
    limit = float("inf") if args.max_matches is None else args.max_matches

    def consider(listing):
        nonlocal matches
        if listing["id"] in seen or listing.get("mine"):
            return
        seen.add(listing["id"])
        common = wanted & words(listing["title"], listing.get("description", ""), *listing.get("tags", []))
        if common:
            react(listing, offer, common)
            matches += 1

    for listing in known:
        if matches < limit:
            consider(listing)
    with stream:
        for event, data in ([] if matches >= limit else sse(stream, deadline)):
            if event == "listing_new":
                consider(json.loads(data)["listing"])
            if matches >= limit:
                break
    if matches < limit != float("inf"):
        if deadline is not None and time.monotonic() >= deadline:
            raise Fail(f"timed out after {args.timeout:g} s with {matches} of {args.max_matches} matches")
        raise Fail(f"the node closed the event stream after {matches} of {args.max_matches} matches")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        print(f"bot.py: error: {e}", file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        sys.exit(130)
