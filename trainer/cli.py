"""The trainer's commands for the ``ostraca`` CLI: ``train``, ``generate``, ``attest``,
``verify-attestation``. Torch and the client are imported inside the commands, so that
``ostraca --help`` stays fast."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ostraca.protocol_spec import (
    Envelope,
    OstracaError,
    PublicKey,
    TrainingAttestation,
    VerifyKey,
)

if TYPE_CHECKING:
    from ostraca.client.config import ClientConfig

    from .config import TrainConfig
    from .train import TrainResult

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

EXIT_REVOKED = 3
"""The exit status of a run stopped because its grant was revoked or expired."""

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON (for scripts), on stdout alone; logs on stderr.")
]


def _print_json(data: Any) -> None:
    """``data`` on stdout alone, as the ``--json`` of every ``ostraca`` command prints it."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _fail(exc: OstracaError, *, code: int = 1, rank0_only: bool = False) -> typer.Exit:
    """Print ``exc`` as the one line of a failure; ``rank0_only`` for what every rank of a
    ``torchrun`` job saw alike (access ended), said once."""
    if not rank0_only or os.environ.get("RANK", "0") == "0":
        err_console.print(f"[red]error[/red] {escape(f'[{exc.code}] {exc}')}")
    return typer.Exit(code)


def _load_key(spec: str) -> VerifyKey:
    """A ``.pub.json`` file (as ``ostraca keygen`` writes), or the raw key in base64."""
    path = Path(spec)
    if path.exists():
        obj = json.loads(path.read_text())
        pub = PublicKey.model_validate({"keyid": obj["keyid"], "public": obj["public"]})
        return pub.to_verify_key()
    return VerifyKey.from_b64(spec)


def _client_config(ctx: typer.Context) -> ClientConfig:
    """The client's configuration, with the global options (``--registry``, ``--identity``, …)
    that the root ``ostraca`` command keeps in its context's ``obj`` when these commands are
    mounted there."""
    from ostraca.client.config import load_config  # noqa: PLC0415 - keeps --help fast

    obj = ctx.find_root().obj
    return load_config(**(obj if isinstance(obj, dict) else {}))


def _load_trainer_key(spec: str | None, config: ClientConfig) -> VerifyKey:
    """``spec`` (see :func:`_load_key`), by default the public half of this identity's key."""
    if spec is not None:
        return _load_key(spec)
    from ostraca.client.keystore import public_path  # noqa: PLC0415

    path = public_path(config.identity_path)
    if not path.exists():
        raise OstracaError(f"no trainer key given and {path} does not exist")
    return _load_key(str(path))


def register_trainer_commands(app: typer.Typer) -> None:
    """Add ``train``, ``generate``, ``attest`` and ``verify-attestation`` to ``app``."""
    app.command("train")(train_command)
    app.command("generate")(generate_command)
    app.command("attest")(attest_command)
    app.command("verify-attestation")(verify_attestation_command)


def train_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Run folder (checkpoint, metrics, tokenizer).")],
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset to stream from the registry: ns/name[@version]."),
    ] = None,
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from-dir",
            help="Train from a copy `ostraca pull` wrote (for nodes that cannot reach the "
            "registry): signatures, grant validity and every shard are verified here; "
            "revocation is checked when the registry is reachable.",
        ),
    ] = None,
    publisher_key: Annotated[
        str | None,
        typer.Option(
            help="With --from-dir: the publisher key to trust (.pub.json or base64) [default: "
            "the key pinned in $OSTRACA_HOME, else the copy's keys.json].",
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 1000,
    text_column: Annotated[str, typer.Option(help="Column holding the documents.")] = "text",
    model_size: Annotated[str, typer.Option(help="toy, mini, 100m or gpt2-small.")] = "toy",
    batch_size: Annotated[int, typer.Option(help="Sequences per micro-batch per rank.")] = 8,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per sequence.")] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per step.")] = 1,
    mix_batches: Annotated[
        int,
        typer.Option(
            help="Deal each micro-batch's sequences from N micro-batches of consecutive text."
        ),
    ] = 1,
    eval_every: Annotated[int, typer.Option(help="Evaluate every N steps (0: never).")] = 0,
    eval_shards: Annotated[int, typer.Option(help="Shards held out for evaluation.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 0,
    tokenizer: Annotated[str, typer.Option(help="bytes, or bpe (trained here).")] = "bytes",
    compile: Annotated[bool, typer.Option(help="torch.compile the model.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue from the run's checkpoint, with the settings it saved (a flag that "
            "contradicts them is refused)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and shuffling.")] = 0,
    grant_check_every: Annotated[
        float | None,
        typer.Option(help="Seconds between checks of the grant with the registry [default: 60]."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a Transformer on a verified dataset you hold a grant for: streamed from the
    registry (--dataset), or from a pulled copy (--from-dir). Exits 3 when the grant is revoked
    or expires (after saving a checkpoint)."""
    if (dataset is None) == (from_dir is None):
        raise typer.BadParameter("give exactly one of --dataset and --from-dir")
    if publisher_key is not None and from_dir is None:
        raise typer.BadParameter("--publisher-key goes with --from-dir")
    from .revocation import ACCESS_ENDED  # noqa: PLC0415

    try:
        cfg = _train_config(ctx)
        result = _train_from(
            cfg,
            _client_config(ctx),
            dataset=dataset,
            from_dir=from_dir,
            publisher_key=publisher_key,
            log=err_console.print if as_json else console.print,
        )
    except ACCESS_ENDED as exc:
        raise _fail(exc, code=EXIT_REVOKED, rank0_only=True) from exc
    except OstracaError as exc:
        raise _fail(exc) from exc
    _print_train_result(result, cfg, as_json=as_json)


def _print_train_result(result: TrainResult, cfg: TrainConfig, *, as_json: bool) -> None:
    last = result.evals[-1] if result.evals else None
    if as_json:
        _print_json(
            {
                "out": str(cfg.out_dir),
                "checkpoint": None if result.checkpoint is None else str(result.checkpoint),
                "step": result.step,
                "steps": cfg.steps,
                "stopped": result.stopped,
                "tokens": result.tokens,
                "tokens_per_s": result.tokens_per_s,
                "data_wait_fraction": result.data_wait_fraction,
                "train_loss": result.losses[-1] if result.losses else None,
                "num_params": result.num_params,
                "held_out": None if last is None else dataclasses.asdict(last),
            }
        )
        return
    console.print(
        f"step {result.step}, {result.tokens:,} tokens, {result.tokens_per_s:,.0f} tok/s, "
        f"data wait {result.data_wait_fraction:.1%}; checkpoint {result.checkpoint}"
    )
    if last is not None:
        console.print(
            f"held-out loss {last.loss_per_byte:.4f} nats/byte ({last.loss:.4f} nats/token) "
            f"on shards {list(last.shards)}"
        )


_TRAIN_SETTINGS = (
    "steps",
    "text_column",
    "model_size",
    "batch_size",
    "seq_len",
    "lr",
    "grad_accum",
    "mix_batches",
    "eval_every",
    "eval_shards",
    "checkpoint_every",
    "tokenizer",
    "compile",
    "device",
    "resume",
    "seed",
    "grant_check_every",
)
"""The options of ``train`` that are :class:`TrainConfig` fields of the same name."""


def _train_config(ctx: typer.Context) -> TrainConfig:
    """The command's settings; with ``--resume``, the run's saved ones for every flag left out
    (and a flag that contradicts one refused)."""
    from .checkpoint import CONFIG_FILE, read_run_config  # noqa: PLC0415
    from .config import TrainConfig, resumed_settings  # noqa: PLC0415

    out: Path = ctx.params["out"]
    given = {"out_dir": out, **{k: ctx.params[k] for k in _TRAIN_SETTINGS}}
    if given["grant_check_every"] is None:  # TrainConfig's default
        del given["grant_check_every"]
    if ctx.params["as_json"]:  # stdout holds the summary alone: no live bar there
        given["progress"] = False
    saved = read_run_config(out) if ctx.params["resume"] else None
    if saved is not None:
        sources = {k: ctx.get_parameter_source(k) for k in _TRAIN_SETTINGS}
        explicit = {k for k, v in sources.items() if v is not None and v.name != "DEFAULT"}
        given = resumed_settings(given, saved["train"], explicit=explicit, where=out / CONFIG_FILE)
    return TrainConfig(**given)


def _train_from(
    cfg: TrainConfig,
    client_config: ClientConfig,
    *,
    dataset: str | None,
    from_dir: Path | None,
    publisher_key: str | None,
    log: Callable[[str], None],
) -> TrainResult:
    from ostraca.client.local import PulledDataset, open_pulled  # noqa: PLC0415
    from ostraca.client.stream import VerifiedDataset, open_dataset, parse_ref  # noqa: PLC0415

    from .revocation import RegistryGrantCheck, online_check  # noqa: PLC0415
    from .train import train  # noqa: PLC0415

    source: VerifiedDataset | PulledDataset
    check: RegistryGrantCheck | None = None
    if from_dir is not None:
        keys = None if publisher_key is None else [_load_key(publisher_key)]
        source = open_pulled(
            from_dir, publisher_keys=keys, home=client_config.home, columns=[cfg.text_column]
        )
        checked = online_check(source, client_config)
        if isinstance(checked, str):
            err_console.print(f"revocation not checked ({escape(checked)})")
        else:
            check = checked
    else:
        assert dataset is not None
        name, version = parse_ref(dataset)
        source = open_dataset(
            name, version=version, columns=[cfg.text_column], config=client_config
        )
    try:
        with source:
            return train(cfg, source=source, log=log, grant_check=check)
    finally:
        if check is not None:
            check.close()


def generate_command(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    prompt: Annotated[str, typer.Option(help="Text to continue.")] = "",
    max_tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 200,
    temperature: Annotated[float, typer.Option(help="0 for greedy.")] = 0.8,
    top_k: Annotated[int, typer.Option(help="Sample among the k likeliest (0: all).")] = 50,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    stop_at_eos: Annotated[bool, typer.Option(help="End at the first end of document.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sample text from a trained run."""
    from .generate import generate  # noqa: PLC0415

    text = generate(
        run,
        prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        top_k=top_k or None,
        seed=seed,
        stop_at_eos=stop_at_eos,
    )
    if as_json:
        settings = {"temperature": temperature, "top_k": top_k, "seed": seed}
        _print_json({"run": str(run), "prompt": prompt, "completion": text, **settings})
    else:
        console.print(prompt + text, markup=False, highlight=False)


def _attestation_json(path: Path, statement: TrainingAttestation, digest: str) -> dict[str, Any]:
    """An attestation for scripts: where it is, its id (sha256 of its payload), what it says."""
    return {"attestation": str(path), "id": digest, **statement.model_dump(mode="json")}


def attest_command(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(help="Run folder (or checkpoint file).")],
    key: Annotated[
        Path | None, typer.Option(help="Trainer key [default: your identity's key].")
    ] = None,
    passphrase_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the key's passphrase [default: the configured one]."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign a TrainingAttestation for the run's checkpoint; write attestation.json beside it."""
    from ostraca.client.keystore import load_signing_key  # noqa: PLC0415

    from .attest import attest_run  # noqa: PLC0415

    try:
        config = _client_config(ctx)
        if key is None:
            key, passphrase = config.identity_path, config.passphrase
        else:
            passphrase = None
        if passphrase_env is not None:
            passphrase = os.environ.get(passphrase_env)
        signing = load_signing_key(key, passphrase=passphrase)
        path = attest_run(run, signing)
    except OstracaError as exc:
        raise _fail(exc) from exc
    if as_json:
        envelope = Envelope.from_json(path.read_bytes())
        statement = TrainingAttestation.from_json_obj(json.loads(envelope.payload))
        _print_json(_attestation_json(path, statement, envelope.digest))
    else:
        console.print(f"attestation {path} (trainer {signing.keyid})")


def verify_attestation_command(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(help="Run folder or attestation.json.")],
    trainer_key: Annotated[
        str | None,
        typer.Option(help="Trainer's .pub.json or base64 key [default: your identity]."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a run's attestation: signature, trainer key, and the checkpoint's sha256. Exits 1
    when a check fails (with --json, after printing {"ok": false, "error": …})."""
    from .attest import ATTESTATION_FILE, verify_run_attestation  # noqa: PLC0415

    path = target / ATTESTATION_FILE if target.is_dir() else target
    try:
        trainer = _load_trainer_key(trainer_key, _client_config(ctx))
        v = verify_run_attestation(target, trainer_key=trainer)
    except OstracaError as exc:
        if as_json:
            error = {"code": exc.code, "message": str(exc)}
            _print_json({"ok": False, "attestation": str(path), "error": error})
        raise _fail(exc) from exc
    a = v.statement
    if as_json:
        _print_json({"ok": True, **_attestation_json(path, a, v.digest)})
        return
    console.print(
        f"[green]verified[/green] {a.steps} steps, {a.tokens:,} tokens, trainer {a.trainer}"
    )
    for d in a.datasets:
        console.print(
            f"  {d.dataset}@{d.version} manifest {d.manifest} licence {d.license} "
            f"grants {', '.join(d.grants)} shards {d.shards_consumed}"
        )
