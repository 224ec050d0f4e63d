"""Command line of the authoring tools (registered by gateway/cli.py).

    distill-guard replay --policy FILE TRAFFIC.jsonl [TRAFFIC.jsonl ...] [--json]
    distill-guard policy explain --policy FILE --request REQUEST.json [--identity KEY]
                                 [--history TRAFFIC.jsonl] [--json]

Identity ids for `api_key` lines and `--identity` are computed with
DISTILL_GUARD_IDENTITY_SECRET (the gateway's development default when unset),
so they match the gateway's when it runs with the same secret.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from gateway.identity import IdentityHasher


def add_replay_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `replay` to a `subparsers` object (from `ArgumentParser.add_subparsers`)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replay", help="run recorded traffic through a policy offline, report per rule",
        description="Run recorded traffic (the gateway's audit log, or hand-written lines; "
        "docs/replay.md) through a policy offline, in timestamp order on a simulated clock, "
        "and report per rule how many requests it would have delayed, refused, modified or "
        "perturbed, and which identities it would have flagged. Shadow rules are reported "
        "with what they would have done. Nothing is sent anywhere.")
    parser.add_argument("--policy", type=Path, required=True, help="policy file (YAML)")
    parser.add_argument("traffic", type=Path, nargs="+", metavar="TRAFFIC.jsonl",
                        help="traffic files; several are merged by timestamp")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--window", type=int, default=10_000,
                        help="lines a file may be out of timestamp order (default 10000); "
                        "later lines are played at the current time and counted as late")
    parser.add_argument("--enforce-shadow", action="store_true",
                        help="treat shadow rules as enforced (what enabling them would do)")
    parser.add_argument("--top", type=int, default=10,
                        help="identities listed per rule in the table (default 10)")
    parser.set_defaults(func=run_replay)
    return parser


def add_explain_parser(policy_subparsers: Any) -> argparse.ArgumentParser:
    """Add `explain` to the `policy` command's subparsers."""
    parser: argparse.ArgumentParser = policy_subparsers.add_parser(
        "explain", help="show rule by rule what a policy does with one request",
        description="Run one request through a policy offline and show, rule by rule, "
        "whether it matched (and why not), what its counters read and what it decided, "
        "then the result. Nothing is sent upstream.")
    parser.add_argument("--policy", type=Path, required=True, help="policy file (YAML)")
    parser.add_argument("--request", type=Path, required=True, metavar="REQUEST.json",
                        help="a request body, or {method, path, headers, body, ...} "
                        "(any traffic-line field, e.g. a line of the audit log)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--identity", metavar="KEY", help="the caller's API key (hashed)")
    who.add_argument("--identity-id", metavar="ID",
                     help="the caller's identity id (as in the audit log)")
    parser.add_argument("--path", default=None,
                        help="the route for a bare body (default /v1/chat/completions; "
                        "/v1/messages is the Anthropic API)")
    parser.add_argument("--history", type=Path, action="append", default=[],
                        metavar="TRAFFIC.jsonl",
                        help="replay this traffic first so counters and suspicion are warm "
                        "(repeatable)")
    parser.add_argument("--at", type=float, default=None, metavar="TS",
                        help="unix time of the request (default: its `ts`, else the end "
                        "of the history, else now)")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.add_argument("--enforce-shadow", action="store_true",
                        help="treat shadow rules as enforced")
    parser.set_defaults(func=run_explain)
    return parser


def identity_hasher() -> IdentityHasher:
    from gateway.settings import Settings

    secret = os.environ.get("DISTILL_GUARD_IDENTITY_SECRET")
    if secret is None:
        secret = Settings.model_fields["identity_secret"].get_default().get_secret_value()
    return IdentityHasher(secret.encode())


def _load(path: Path, enforce_shadow: bool) -> BaseModel:
    from gateway.authoring.replay import unshadowed
    from gateway.pipeline.loader import load_policy

    policy = load_policy(path)
    return unshadowed(policy) if enforce_shadow else policy


def _fail(command: str, message: object) -> int:
    print(f"distill-guard {command}: {message}", file=sys.stderr)
    return 2


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def run_replay(args: argparse.Namespace) -> int:
    from gateway.authoring.replay import render, replay
    from gateway.authoring.traffic import ReadStats, read_traffic
    from gateway.pipeline.loader import PolicyError

    if args.window < 0:
        return _fail("replay", "--window must be 0 or more")
    try:
        policy = _load(args.policy, False)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 2
    stats = ReadStats()
    entries = read_traffic(args.traffic, identity_hasher(), policy, stats, window=args.window)
    try:
        report = asyncio.run(replay(entries, policy, policy_name=str(args.policy), stats=stats,
                                    enforce_shadow=args.enforce_shadow))
    except OSError as exc:
        return _fail("replay", exc)
    for problem in stats.problems:
        print(f"skipped {problem}", file=sys.stderr)
    data = report.to_json()
    sys.stdout.write(_dump(data) if args.json else render(data, top=args.top))
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from gateway.authoring.explain import explain, render
    from gateway.authoring.traffic import (
        ReadStats,
        TrafficError,
        classify,
        parse_record,
        read_traffic,
    )
    from gateway.pipeline.loader import PolicyError

    try:
        policy = _load(args.policy, args.enforce_shadow)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 2
    hasher = identity_hasher()
    try:
        data = orjson.loads(args.request.read_bytes())
        record = data if is_envelope(data) else {"body": data}
        if args.path is not None:
            record = {**record, "path": args.path}
        entry = parse_record(record, hasher, policy, str(args.request), require_ts=False)
    except (OSError, orjson.JSONDecodeError, TrafficError) as exc:
        return _fail("policy explain", f"{args.request}: {exc}")
    request = entry.request
    if args.identity is not None or args.identity_id is not None:
        identity_id = (hasher.hash_key(args.identity) if args.identity is not None
                       else args.identity_id)
        request.identity = classify(identity_id, not identity_id.startswith("anon-"),
                                    request.headers, policy)
    at = args.at if args.at is not None else record.get("ts")
    stats = ReadStats()
    history = read_traffic(args.history, hasher, policy, stats)
    try:
        result = asyncio.run(explain(request, policy, policy_name=str(args.policy),
                                     history=history, at=at))
    except OSError as exc:
        return _fail("policy explain", exc)
    for problem in stats.problems:
        print(f"skipped {problem}", file=sys.stderr)
    sys.stdout.write(_dump(result.data) if args.json else render(result.data))
    return 0


ENVELOPE_FIELDS = frozenset({
    "v", "ts", "request_id", "identity", "api_key", "authenticated", "method", "path", "query",
    "client_ip", "headers", "model", "body", "status", "decision", "shadow",
})


def is_envelope(data: Any) -> bool:
    """A traffic record ({..., "body": ...}) rather than a bare request body."""
    return (isinstance(data, dict) and data.keys() <= ENVELOPE_FIELDS
            and not data.keys().isdisjoint({"body", "path", "method"}))
