"""Generate ``protocol_spec/vectors/cards.json``: dataset cards and deprecations (SPEC.md 5.8,
5.9, section 10).

Deterministic, with the keys, dataset and manifests of ``gen_vectors.py`` (fixed seeds, fixed
times); ``tests/protocol_spec/test_card_vectors.py`` checks the committed file is exactly what
this script writes, and that every vector verifies (or fails with its code).

    python scripts/gen_card_vectors.py [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gen_vectors import (
    DATASET,
    M1,
    M2,
    NOW,
    PUB,
    PUB2,
    STRANGER,
    VECTORS_DIR,
    negative,
    positive,
    render,
    signed,
    signed_obj,
)

from ostraca.protocol_spec import Envelope, sign_envelope
from ostraca.protocol_spec.cards import DatasetCard, Deprecation

JSON = dict[str, Any]
CARD_T = DatasetCard.PAYLOAD_TYPE
DEPRECATION_T = Deprecation.PAYLOAD_TYPE
ROTATED = "2024-05-20T00:00:00Z"
"""When ``publisher_second`` was rotated away in the vectors that list it as retired."""


def card_obj(sequence: int, previous: str | None, **changes: Any) -> JSON:
    obj: JSON = {
        "spec_version": 1,
        "dataset": DATASET,
        "publisher": PUB.keyid,
        "sequence": sequence,
        "previous": previous,
        "description": "Public-domain books, one row per paragraph.",
        "readme": "# Acme books\n\nParagraphs of public-domain books.\n",
        "created": f"2024-05-{10 + sequence}T09:00:00Z",
    }
    obj.update(changes)
    return obj


def deprecation_obj(**changes: Any) -> JSON:
    obj: JSON = {
        "spec_version": 1,
        "dataset": DATASET,
        "version": 2,
        "manifest": M2.digest,
        "publisher": PUB.keyid,
        "reason": "rows 10-20 of shard 1 are mislabelled",
        "created": "2024-05-25T09:00:00Z",
    }
    obj.update(changes)
    return obj


def card(sequence: int, previous: str | None, *keys: Any, **changes: Any) -> Envelope:
    statement = DatasetCard.model_validate(card_obj(sequence, previous, **changes))
    return signed(statement, *(keys or (PUB,)))


CARD1 = card(1, None)
CARD2 = card(2, CARD1.digest)
DEPRECATION = signed(Deprecation.model_validate(deprecation_obj()), PUB)
M2_HEAD = {"version": 2, "digest": M2.digest}


def inputs(check: str, **values: Any) -> JSON:
    base: JSON = {
        "check": check,
        "now": NOW,
        "trusted_keys": [PUB.keyid],
        "retired": [],
        "dataset": DATASET,
        "previous_card": None,
        "manifest": None,
    }
    for key, value in values.items():
        if key not in base:
            raise KeyError(key)
        base[key] = value
    return base


def valid(name: str, description: str, env: Envelope, inp: JSON, signer: str) -> JSON:
    vector = positive(name, description, env, {**inp, "_signer": signer})
    del vector["inputs"]["_signer"]
    return vector


def positives() -> list[JSON]:
    retired = [{"keyid": PUB2.keyid, "until": ROTATED}]
    head1 = {"sequence": 1, "digest": CARD1.digest}
    return [
        valid("card_first", "the first card (sequence 1)", CARD1, inputs("card"), PUB.keyid),
        valid(
            "card_supersedes",
            "card 2 supersedes the trusted card 1 (C8)",
            CARD2,
            inputs("card", previous_card=head1),
            PUB.keyid,
        ),
        valid(
            "card_skips_ahead",
            "card 3 while card 1 is trusted: newer cards need not be fetched in between (C8)",
            card(3, "ab" * 32),
            inputs("card", previous_card=head1),
            PUB.keyid,
        ),
        valid(
            "card_same_as_trusted",
            "the trusted card itself verifies (nothing new)",
            CARD2,
            inputs("card", previous_card={"sequence": 2, "digest": CARD2.digest}),
            PUB.keyid,
        ),
        valid(
            "card_unknown_field",
            "an unknown field is ignored (and stays under the signature)",
            signed_obj(CARD_T, card_obj(1, None, homepage="https://example.org"), PUB),
            inputs("card"),
            PUB.keyid,
        ),
        valid(
            "card_by_retired_key_before_rotation",
            "signed by a retired key, created before its rotation (C4)",
            card(1, None, PUB2, publisher=PUB2.keyid),
            inputs("card", retired=retired),
            PUB2.keyid,
        ),
        valid(
            "deprecation_of_version_2",
            "deprecates exactly version 2's manifest (D8)",
            DEPRECATION,
            inputs("deprecation", manifest=M2_HEAD),
            PUB.keyid,
        ),
        valid(
            "deprecation_without_manifest",
            "no manifest input: D8 is not checked",
            DEPRECATION,
            inputs("deprecation"),
            PUB.keyid,
        ),
    ]


def negatives() -> list[JSON]:
    head2 = {"sequence": 2, "digest": CARD2.digest}
    retired = [{"keyid": PUB2.keyid, "until": ROTATED}]
    dep = inputs("deprecation", manifest=M2_HEAD)
    return [
        negative(
            "card_as_deprecation",
            "a card's bytes signed as a deprecation: not a valid deprecation (D4)",
            "malformed",
            signed_obj(DEPRECATION_T, card_obj(1, None), PUB),
            dep,
        ),
        negative(
            "card_wrong_payload_type",
            "a card verified as a deprecation",
            "wrong_payload_type",
            CARD1,
            dep,
        ),
        negative(
            "card_by_stranger",
            "signed by a key not of the namespace",
            "untrusted_key",
            card(1, None, STRANGER, publisher=STRANGER.keyid),
            inputs("card"),
        ),
        negative(
            "card_names_other_publisher",
            "publisher is not the signer (C5)",
            "untrusted_key",
            card(1, None, publisher=PUB2.keyid),
            inputs("card"),
        ),
        negative(
            "card_other_dataset",
            "for another dataset (C6)",
            "out_of_scope",
            card(1, None, dataset="acme/other"),
            inputs("card"),
        ),
        negative(
            "card_from_the_future",
            "created more than 5 minutes after now (C7)",
            "verification_failed",
            card(1, None, created="2024-06-01T12:05:01Z"),
            inputs("card"),
        ),
        negative(
            "card_replayed_older",
            "card 1 while card 2 is trusted (C8)",
            "rollback",
            CARD1,
            inputs("card", previous_card=head2),
        ),
        negative(
            "card_fork",
            "another card 2 than the trusted one (C8)",
            "chain_broken",
            card(2, CARD1.digest, description="a fork"),
            inputs("card", previous_card=head2),
        ),
        negative(
            "card_not_superseding",
            "card 3 naming another previous than trusted card 2",
            "chain_broken",
            card(3, "cd" * 32),
            inputs("card", previous_card=head2),
        ),
        negative(
            "card_first_with_previous",
            "sequence 1 with a previous card (3.7)",
            "malformed",
            signed_obj(CARD_T, card_obj(1, "ab" * 32), PUB),
            inputs("card"),
        ),
        negative(
            "card_float_sequence",
            "sequence 1.0 is not canonical (2.1)",
            "non_canonical",
            signed_obj_text(card_obj(1, None), '"sequence":1', '"sequence":1.0'),
            inputs("card"),
        ),
        negative(
            "card_description_too_long",
            "a description of 16,385 code points (3.7)",
            "malformed",
            signed_obj(CARD_T, card_obj(1, None, description="d" * 16385), PUB),
            inputs("card"),
        ),
        negative(
            "card_by_retired_key_after_rotation",
            "signed by a retired key, created after its rotation (C4)",
            "untrusted_key",
            card(1, None, PUB2, publisher=PUB2.keyid, created="2024-05-21T00:00:00Z"),
            inputs("card", retired=retired),
        ),
        negative(
            "deprecation_by_stranger",
            "signed by a key not of the namespace",
            "untrusted_key",
            signed(Deprecation.model_validate(deprecation_obj(publisher=STRANGER.keyid)), STRANGER),
            dep,
        ),
        negative(
            "deprecation_other_manifest",
            "names version 1's manifest as version 2 (D8)",
            "out_of_scope",
            signed(Deprecation.model_validate(deprecation_obj(manifest=M1.digest)), PUB),
            dep,
        ),
        negative(
            "deprecation_other_version",
            "version 1, checked against version 2 (D8)",
            "out_of_scope",
            signed(Deprecation.model_validate(deprecation_obj(version=1, manifest=M1.digest)), PUB),
            dep,
        ),
        negative(
            "deprecation_empty_reason",
            "a deprecation must say why (3.8)",
            "malformed",
            signed_obj(DEPRECATION_T, deprecation_obj(reason=""), PUB),
            dep,
        ),
        negative(
            "deprecation_from_the_future",
            "created more than 5 minutes after now (D7)",
            "verification_failed",
            signed(
                Deprecation.model_validate(deprecation_obj(created="2024-06-02T00:00:00Z")), PUB
            ),
            dep,
        ),
    ]


def signed_obj_text(obj: JSON, old: str, new: str) -> Envelope:
    """``obj`` signed after one textual change to its canonical form (a defect on purpose)."""
    text = signed_obj(CARD_T, obj, PUB).payload.decode().replace(old, new, 1)
    return sign_envelope(CARD_T, text.encode(), [PUB])


def build() -> JSON:
    return {
        "spec": "SPEC.md sections 5.8, 5.9 and 10",
        "generator": "scripts/gen_card_vectors.py",
        "vectors": positives() + negatives(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=VECTORS_DIR, help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "cards.json"
    path.write_bytes(render(build()))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
