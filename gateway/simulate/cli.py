"""`distill-guard simulate`: labelled traffic through a policy, and how well it detects.

    distill-guard simulate [--policy FILE] [--seed N] [--hours H] [--scale X]
                           [--json OUT] [--gateway URL]

"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

DEFAULT_POLICY = """\
# The simulation's default policy: one prompt_diversity rule with graduated
# steps, and per-key rate shaping that charges throttled identities more.
version: 1
rules:
  - name: diversity
    kind: prompt_diversity
    description: Harvesting signals -> suspicion -> flag, throttle, perturb, reject.
    config:
      steps:
        - {at: 0.6, action: flag}
        - {at: 0.75, action: throttle, factor: 0.5}
        - {at: 0.75, action: perturb, level: 1}
        - {at: 0.95, action: reject}
  - name: suspects
    kind: rate_shaping
    description: Graduated response - a flagged identity gets a much tighter rate.
    match:
      suspicion: ">= 0.6"
      paths: ["/v1/chat/completions", "/v1/messages"]
    config:
      key: identity
      on_exceed: delay
      max_delay: 2
      limits:
        - requests: 10/min
  - name: per-key-rate
    kind: rate_shaping
    description: Per key; a throttled identity pays 1/factor per request.
    match:
      paths: ["/v1/chat/completions", "/v1/messages"]
    config:
      key: identity
      on_exceed: delay
      max_delay: 2
      limits:
        - requests: 120/min
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `simulate` to a `subparsers` object (from `ArgumentParser.add_subparsers`)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate", help="run labelled benign and harvesting traffic through a policy",
        description="Generate labelled traffic (benign apps and distillation campaigns), run "
        "it through a policy in-process on a simulated clock (or send it to a running gateway "
        "with --gateway), and print per-persona detection results.")
    _arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", type=Path, default=None,
                        help="policy file (YAML); default: a built-in prompt_diversity + "
                        "rate_shaping policy")
    parser.add_argument("--seed", type=int, default=1, help="traffic seed (default 1)")
    parser.add_argument("--hours", type=float, default=24.0,
                        help="simulated hours, starting 08:00 (default 24)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplier on every persona's request rate (default 1)")
    parser.add_argument("--json", dest="json_out", type=Path, default=None,
                        help="also write the results as JSON to this file")
    parser.add_argument("--gateway", default=None, metavar="URL",
                        help="send the traffic over HTTP to a gateway on loopback "
                        "(timestamps compressed) instead of running the policy in-process")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="--gateway: requests in flight at once (default 16)")
    parser.add_argument("--admin-token", default=os.environ.get("DISTILL_GUARD_ADMIN_TOKEN"),
                        help="--gateway: read final standings from the gateway's admin API "
                        "(default: env DISTILL_GUARD_ADMIN_TOKEN); identity ids are computed "
                        "with env DISTILL_GUARD_IDENTITY_SECRET, else the development default")
    parser.add_argument("--personas", default=None,
                        help="comma-separated subset of personas (default: all)")


def load(policy_path: Path | None) -> BaseModel:
    from gateway.pipeline.loader import load_policy, parse_policy

    if policy_path is None:
        return parse_policy(DEFAULT_POLICY, "<built-in simulate policy>")
    return load_policy(policy_path)


def run(args: argparse.Namespace) -> int:
    from gateway.pipeline.loader import PolicyError
    from gateway.simulate.personas import PERSONA_NAMES, Span, generate
    from gateway.simulate.report import markdown, summarize
    from gateway.simulate.runner import (
        DEV_IDENTITY_SECRET,
        check_loopback,
        send_over_http,
        simulate,
    )

    try:
        span = Span(hours=args.hours, scale=args.scale)
        names = None if args.personas is None else [
            n.strip() for n in args.personas.split(",") if n.strip()]
        for name in names or ():
            if name not in PERSONA_NAMES:
                raise ValueError(f"unknown persona {name!r} (known: {', '.join(PERSONA_NAMES)})")
        if args.gateway is not None:
            check_loopback(args.gateway)
            if args.concurrency < 1:
                raise ValueError("--concurrency must be at least 1")
    except ValueError as exc:
        print(f"distill-guard simulate: {exc}", file=sys.stderr)
        return 2
    requests = generate(args.seed, span, names)
    if args.gateway is not None:
        secret = os.environ.get("DISTILL_GUARD_IDENTITY_SECRET")
        result = asyncio.run(send_over_http(
            requests, args.gateway, concurrency=args.concurrency, admin_token=args.admin_token,
            identity_secret=secret.encode() if secret else DEV_IDENTITY_SECRET))
    else:
        try:
            policy = load(args.policy)
        except PolicyError as exc:
            print(exc, file=sys.stderr)
            return 2
        result = asyncio.run(simulate(requests, policy))
    summary = summarize(result)
    print(markdown(summary))
    if args.json_out is not None:
        data = summary.to_json()
        data.update(seed=args.seed, hours=args.hours, scale=args.scale,
                    policy=str(args.policy) if args.policy else "built-in")
        args.json_out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="distill-guard simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
