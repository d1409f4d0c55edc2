"""What changed between two policy snapshots, one line per field, as a version records it.

Every policy version stores this list beside its snapshot (admin's history shows it), and an
empty list is how a save that changes nothing is recognised and skipped; experiments use it
to refuse a treatment that routes exactly like the published policy. Pure: two snapshot
dicts in, lines of text out.
"""

from decimal import Decimal

from routing.pricing import PRICE_COLUMNS


def _experiment_label(section: dict | None) -> str:
    if not section:
        return "none"
    return (
        f"{section['id']} (treatment v{section['treatment_version']} "
        f"on {Decimal(section['treatment_percent']).normalize():f}%)"
    )


def _price_changes(prefix: str, before: dict, after: dict) -> list[str]:
    """A model's price book rows added, corrected or removed, named by their dates."""
    old = {row["effective_from"]: row for row in before.get("prices", [])}
    new = {row["effective_from"]: row for row in after["prices"]}
    changes = []
    for day in sorted(old.keys() | new.keys()):
        if day not in old:
            row = new[day]
            prices = "/".join(row[c] for c in PRICE_COLUMNS[:3])
            changes.append(f"{prefix}.prices: row from {day} added (in/cached/out {prices})")
        elif day not in new:
            changes.append(f"{prefix}.prices: row from {day} removed")
        elif old[day] != new[day]:
            changes.append(f"{prefix}.prices: row from {day} corrected")
    return changes


def snapshot_changes(before: dict, after: dict) -> list[str]:
    """Return what differs from `before` to `after`, one line per field."""
    changes = []
    if before.get("experiment") != after.get("experiment"):
        changes.append(
            f"experiment: {_experiment_label(before.get('experiment'))} -> "
            f"{_experiment_label(after.get('experiment'))}"
        )
    if before.get("default_category") != after["default_category"]:
        changes.append(
            f"default_category: {before.get('default_category')} -> {after['default_category']}"
        )
    for section in ("rollout", "router"):
        for key in sorted(after.get(section, {})):
            old = before.get(section, {}).get(key)
            if old != after[section][key]:
                changes.append(f"{section}.{key}: {old!r} -> {after[section][key]!r}")
    for section in ("models", "categories", "flags", "qualifications"):
        old, new = before.get(section, {}), after.get(section, {})
        for name in sorted(old.keys() - new.keys()):
            changes.append(f"{section}.{name}: removed")
        for name in sorted(new.keys() - old.keys()):
            changes.append(f"{section}.{name}: added")
        for name in sorted(old.keys() & new.keys()):
            for key in sorted(new[name]):
                if key == "prices":
                    changes += _price_changes(f"{section}.{name}", old[name], new[name])
                elif old[name].get(key) != new[name][key]:
                    changes.append(
                        f"{section}.{name}.{key}: {old[name].get(key)!r} -> {new[name][key]!r}"
                    )
    return changes
