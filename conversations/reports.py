"""Usage reports: the ledger summed up for the admin dashboard and each user's usage page.

Every figure is a sum over UsageRecord rows, so the totals shown anywhere add up to the
ledger. Charts are plain SVG geometry computed here and drawn by a template.
"""

from collections import defaultdict
from datetime import timedelta
from statistics import median

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate

PALETTE = ["#2456d3", "#e8590c", "#2f9e44", "#9c36b5", "#c92a2a", "#1098ad", "#f08c00", "#5c7cfa"]
FAILED = ("failed", "interrupted")


def totals(records):
    """Requests, tokens and cost (per currency) of some ledger rows."""
    summary = records.aggregate(
        requests=Count("id"),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
        total_tokens=Sum("total_tokens"),
        failed=Count("id", filter=Q(status__in=FAILED)),
    )
    summary = {k: v or 0 for k, v in summary.items()}
    summary["cost"] = list(
        records.values("currency").annotate(amount=Sum("cost")).order_by("currency")
    )
    summary["error_rate"] = summary["failed"] / summary["requests"] if summary["requests"] else 0
    ttfts = list(records.exclude(ttft_ms=None).values_list("ttft_ms", flat=True))
    summary["median_ttft_ms"] = int(median(ttfts)) if ttfts else None
    return summary


def currencies(records):
    """The currencies of some ledger rows, in order: money is summed within each only."""
    return list(records.order_by("currency").values_list("currency", flat=True).distinct())


def top(records, key, limit=10):
    """The biggest users of tokens by `key` (a ledger field such as model_name), each with
    its cost per currency (`costs`: [{"currency", "amount"}]), never one sum of several."""
    rows = list(
        records.values(label=F(key_field(key)))
        .annotate(requests=Count("id"), tokens=Sum("total_tokens"))
        .order_by("-tokens")[:limit]
    )
    costs = defaultdict(list)
    for row in (
        records.filter(**{f"{key_field(key)}__in": [row["label"] for row in rows]})
        .values("currency", label=F(key_field(key)))
        .annotate(amount=Sum("cost"))
        .order_by("currency")
    ):
        costs[row["label"]].append({"currency": row["currency"], "amount": row["amount"]})
    for row in rows:
        row["costs"] = costs[row["label"]]
    return rows


def key_field(key):
    return {"user": "user__username", "model": "model_name", "api_key": "api_key__name"}[key]


def cost_charts(records, key, start, end):
    """Cost per day stacked by `key`: one chart per currency, as amounts in two currencies
    do not add up. [(currency, chart)]."""
    return [
        (currency, daily_chart(records.filter(currency=currency), key, start, end,
                               measure="cost", currency=currency))
        for currency in currencies(records)
    ]  # fmt: skip


def daily_chart(records, key, start, end, *, measure="tokens", currency=None, width=720,
                height=220, top_keys=6):  # fmt: skip
    """Tokens (or cost, of rows all in `currency`) per day, stacked by `key` ("model" or
    "user"), as bars to draw."""
    if measure == "cost" and currencies(records) not in ([], [currency]):
        raise ValueError("a cost chart adds up one currency only")
    field = key_field(key)
    rows = (
        records.annotate(day=TruncDate("created"))
        .values("day", field)
        .annotate(amount=Sum("total_tokens" if measure == "tokens" else "cost"))
        .order_by("day")
    )
    per_day, per_key = defaultdict(dict), defaultdict(int)
    for row in rows:
        per_day[row["day"]][row[field]] = row["amount"]
        per_key[row[field]] += row["amount"]
    keys = sorted(per_key, key=per_key.get, reverse=True)
    shown, others = keys[:top_keys], set(keys[top_keys:])
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    stacks = []
    for day in days:
        values = [(k, per_day[day].get(k, 0)) for k in shown]
        if others:
            values.append(("…", sum(v for k, v in per_day[day].items() if k in others)))
        stacks.append((day, values))
    peak = max((sum(v for _, v in values) for _, values in stacks), default=0)
    scale = height / (peak or 1)
    colours = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate([*shown, "…"])}
    slot = width / max(len(days), 1)
    bars = []
    for i, (day, values) in enumerate(stacks):
        y = height
        for label, value in values:
            if not value:
                continue
            h = value * scale
            y -= h
            bars.append(
                {
                    "x": round(i * slot + slot * 0.1, 1),
                    "y": round(y, 1),
                    "width": round(slot * 0.8, 1),
                    "height": round(h, 1),
                    "fill": colours[label],
                    "title": f"{day:%Y-%m-%d} · {label}: {_amount(value, measure, currency)}",
                }
            )
    legend = [{"label": k, "fill": colours[k]} for k in [*shown, *(["…"] if others else [])]]
    return {"width": width, "height": height, "bars": bars, "legend": legend,
            "peak": _amount(peak, measure, currency), "first": days[0] if days else None,
            "last": days[-1] if days else None}  # fmt: skip


def _amount(value, measure, currency=None):
    return f"{value:,} tokens" if measure == "tokens" else f"{currency} {value:,.4f}"
