"""`distill-guard` command line: serve, demo, identity, policy check/schema, watermark detect."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from pydantic import SecretStr, ValidationError

from gateway.settings import Settings

ENV_PREFIX = "DISTILL_GUARD_"

# CLI flag -> settings field for `serve` (every one is also an env var).
SERVE_FLAGS = {
    "policy": "policy file (YAML)",
    "upstream": "model endpoint base URL, or `demo` for the built-in demo model",
    "redis": "`memory`, or a redis://, redis+cluster:// or redis+sentinel:// URL",
    "host": "listen address",
    "port": "listen port",
    "workers": "worker processes",
    "log_level": "debug, info, warning or error",
}


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {f: getattr(args, f) for f in SERVE_FLAGS if getattr(args, f, None) is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            field = ".".join(str(p) for p in error["loc"])
            print(f"distill-guard: setting {field} ({ENV_PREFIX}{field.upper()}): "
                  f"{error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def _check_policy_or_exit(path: str) -> None:
    from gateway.pipeline.loader import PolicyError, load_policy

    try:
        load_policy(path)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def worker_environment(settings: Settings) -> dict[str, str]:
    """DISTILL_GUARD_* variables that rebuild `settings` in a worker process.

    Secrets are written as their values: a JSON dump would write "**********"
    and every worker would hash keys with that instead of the real secret.
    """
    env: dict[str, str] = {}
    for field, value in settings.model_dump(mode="json").items():
        secret = getattr(settings, field)
        if isinstance(secret, SecretStr):
            value = secret.get_secret_value()
        if value is None:
            continue
        env[ENV_PREFIX + field.upper()] = (
            json.dumps(value) if isinstance(value, list) else str(value))
    return env


def _run(settings: Settings) -> None:
    import uvicorn

    _check_policy_or_exit(str(settings.policy))
    # Worker processes read their settings from the environment.
    os.environ.update(worker_environment(settings))
    uvicorn.run(
        "gateway.app:create_app_from_env", factory=True, host=settings.host,
        port=settings.port, workers=settings.workers, log_config=None,
        access_log=False, timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        proxy_headers=False,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    _run(_settings_from(args))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    settings = settings.model_copy(update={"upstream": "demo", "demo_word_delay": 0.02})
    base = f"http://{settings.host}:{settings.port}"
    print(f"""distill-guard demo: gateway on {base}, demo model behind it.

Try it with curl:
  curl -sN {base}/v1/chat/completions -H 'Authorization: Bearer demo-key' \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "demo-model", "stream": true,
         "messages": [{{"role": "user", "content": "Tell me about rivers"}}]}}'

Or with the official openai SDK (pip install openai):
  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="demo-key")
  for chunk in client.chat.completions.create(
          model="demo-model", stream=True,
          messages=[{{"role": "user", "content": "Tell me about rivers"}}]):
      print(chunk.choices[0].delta.content or "", end="", flush=True)
""", flush=True)
    _run(settings)
    return 0


def cmd_identity(args: argparse.Namespace) -> int:
    from gateway.identity import IdentityHasher

    settings = _settings_from(args)
    hasher = IdentityHasher(settings.identity_secret.get_secret_value().encode())
    print(hasher.hash_key(args.key))
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    from gateway.pipeline.loader import PolicyError, load_policy

    failed = False
    for path in args.files:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            print(exc, file=sys.stderr)
            failed = True
        else:
            print(f"{path}: ok ({len(getattr(policy, 'rules', []))} rules)")
    return 1 if failed else 0


def cmd_policy_docs(args: argparse.Namespace) -> int:
    from gateway.pipeline.policy_docs import reference_markdown

    sys.stdout.write(reference_markdown())
    return 0


def cmd_policy_schema(args: argparse.Namespace) -> int:
    from gateway.pipeline.policy_file import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip() and not line.startswith("#")]
    except OSError as exc:
        print(f"distill-guard: {path}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_watermark_detect(args: argparse.Namespace) -> int:
    from gateway.identity import IdentityHasher
    from gateway.watermark import Detector, report

    settings = _settings_from(args)
    if args.secret_file:
        try:
            with open(args.secret_file, "rb") as f:
                secret = f.read().strip()
        except OSError as exc:
            print(f"distill-guard: {args.secret_file}: {exc.strerror}", file=sys.stderr)
            return 2
    else:
        secret = settings.watermark_secret.get_secret_value().encode()
    identities = _read_lines(args.identities) if args.identities else []
    if args.keys:
        hasher = IdentityHasher(settings.identity_secret.get_secret_value().encode())
        identities = [hasher.hash_key(key) for key in identities]
    detector = Detector(secret, identities)
    rows = []
    texts = []
    for name in args.files:
        if name == "-":
            text = sys.stdin.read()
        else:
            try:
                with open(name, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                print(f"distill-guard: {name}: {exc}", file=sys.stderr)
                return 2
        texts.append(text)
        rows.append((name, detector.detect(text)))
    if args.combine and len(texts) > 1:
        rows.append((f"(all {len(texts)} inputs)", detector.detect(*texts)))
    if args.json:
        print(json.dumps([report.as_json(name, d) for name, d in rows], indent=2))
    else:
        print(report.table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distill-guard", description="API gateway that defends a model against distillation.")
    sub = parser.add_subparsers(dest="command", required=True)

    def serve_flags(p: argparse.ArgumentParser) -> None:
        for field, help_text in SERVE_FLAGS.items():
            flag = "--" + field.replace("_", "-")
            kind = int if field in ("port", "workers") else str
            p.add_argument(flag, dest=field, type=kind, default=None,
                           help=f"{help_text} (env {ENV_PREFIX}{field.upper()})")

    serve = sub.add_parser("serve", help="run the gateway")
    serve_flags(serve)
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="run the gateway with the demo model and print examples")
    serve_flags(demo)
    demo.set_defaults(func=cmd_demo)

    identity = sub.add_parser("identity", help="print the identity id of an API key")
    identity.add_argument("key")
    identity.set_defaults(func=cmd_identity)

    from gateway.simulate import cli as simulate_cli

    simulate = simulate_cli.add_parser(sub)
    simulate.set_defaults(func=simulate_cli.run)

    watermark = sub.add_parser("watermark", help="output watermark tools")
    watermark_sub = watermark.add_subparsers(dest="watermark_command", required=True)
    detect = watermark_sub.add_parser(
        "detect", help="test texts for the watermark and name the identity they were served to",
        description="Per input: the deployment mark's z-score and p-value, and the most "
                    "likely source identity among --identities with its own score.")
    detect.add_argument("files", nargs="+", metavar="FILE", help="text files, `-` for stdin")
    detect.add_argument("--secret-file", metavar="F",
                        help=f"file holding the deployment secret (default: the setting "
                             f"{ENV_PREFIX}WATERMARK_SECRET)")
    detect.add_argument("--identities", metavar="FILE",
                        help="candidate identity ids, one a line")
    detect.add_argument("--keys", action="store_true",
                        help=f"--identities holds raw API keys: hash them with "
                             f"{ENV_PREFIX}IDENTITY_SECRET first")
    detect.add_argument("--combine", action="store_true",
                        help="also score all inputs together, as one body of evidence "
                             "(many outputs of one suspect model)")
    detect.add_argument("--json", action="store_true", help="JSON instead of a table")
    detect.set_defaults(func=cmd_watermark_detect)

    policy = sub.add_parser("policy", help="policy file tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate policy files")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=cmd_policy_check)
    schema = policy_sub.add_parser("schema", help="print the policy JSON Schema")
    schema.set_defaults(func=cmd_policy_schema)
    docs = policy_sub.add_parser(
        "docs", help="print the policy reference (Markdown) generated from the models")
    docs.set_defaults(func=cmd_policy_docs)

    from gateway.authoring import cli as authoring_cli

    authoring_cli.add_explain_parser(policy_sub)  # policy explain
    authoring_cli.add_replay_parser(sub)  # replay
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
