"""The dataset card's section on labels a person checked: one table per curate revision in the manifest."""

from __future__ import annotations

from .markdown import table

CURATE = "curate"  # the reason of a revision written by dataigm curate apply (dataigm.curate.REASON)


def label_changes_section(manifest: dict) -> str | None:
    """``## Labels checked by a person``: labels flipped and confirmed per concept, source and method, per
    finished curate revision; None when the dataset has none."""
    revisions = [r for r in manifest.get("revisions", []) if r.get("reason") == CURATE and r.get("status") == "done"]
    if not revisions:
        return None
    parts = [
        "## Labels checked by a person\n\n"
        "Labels reviewed with `dataigm review` and applied with `dataigm curate apply`: a flipped or confirmed "
        'label has `label_source = "person"` and `previous_label`, the label it had before (the revision\'s plan, '
        "`meta/revisions/<revision>.json`, keeps it too)."
    ]
    for revision in revisions:
        rows = revision.get("labels_changed", [])
        flipped = sum(r["flipped"] for r in rows)
        confirmed = sum(r["confirmed"] for r in rows)
        parts.append(f"Revision `{revision['id']}`: {flipped} label(s) flipped, {confirmed} confirmed.")
        parts.append(
            table(
                ("concept", "source", "method", "flipped", "to target", "to pair", "confirmed"),
                [
                    (
                        r["concept"],
                        r["source"],
                        r["method"],
                        r["flipped"],
                        r["to_target"],
                        r["to_pair"],
                        r["confirmed"],
                    )
                    for r in rows
                ],
            )
        )
    return "\n\n".join(parts)
