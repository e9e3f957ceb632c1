"""Usage reports: the ledger summed up for the admin dashboard and each user's usage page.

Every figure is a sum over UsageRecord rows, so the totals shown anywhere add up to the
ledger. Charts are plain SVG geometry computed here and drawn by a template.
"""

from collections import defaultdict
from datetime import timedelta
from statistics import median

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils.translation import gettext as _

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


def top(records, key, limit=10):
    """The biggest users of tokens by `key` (a ledger field such as model_name), each with
    its cost in every currency it was charged in (`costs`: [{"currency", "amount"}])."""
    field = key_field(key)
    rows = list(
        records.values(label=F(field))
        .annotate(requests=Count("id"), tokens=Sum("total_tokens"))
        .order_by("-tokens")[:limit]
    )
    costs = defaultdict(list)
    by_currency = (
        records.filter(**{f"{field}__in": [row["label"] for row in rows]})
        .values("currency", label=F(field))
        .annotate(amount=Sum("cost"))
        .order_by("currency")
    )
    for cost in by_currency:
        costs[cost["label"]].append({"currency": cost["currency"], "amount": cost["amount"]})
    for row in rows:
        row["costs"] = costs[row["label"]]
    return rows


def key_field(key):
    return {"user": "user__username", "model": "model_name", "api_key": "api_key__name"}[key]


def currencies(records):
    """The currencies some ledger rows were charged in; USD when there are none."""
    found = records.order_by("currency").values_list("currency", flat=True).distinct()
    return list(found) or ["USD"]


# The chart's drawing: the plot inside margins that hold the axes' labels.
CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM = 64, 8, 16, 28


def daily_chart(records, key, start, end, *, measure="tokens", currency=None, width=720,
                height=240, top_keys=6):  # fmt: skip
    """Tokens (or the cost in one `currency`) per day, stacked by `key` ("model" or
    "user"), as bars to draw, with its axes: the amounts at the left, the days below."""
    field = key_field(key)
    if measure == "cost":
        records = records.filter(currency=currency)
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
    plot_width = width - CHART_LEFT - CHART_RIGHT
    plot_height = height - CHART_TOP - CHART_BOTTOM
    bottom = CHART_TOP + plot_height
    scale = plot_height / (peak or 1)
    colours = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate([*shown, "…"])}
    slot = plot_width / max(len(days), 1)
    bars = []
    for i, (day, values) in enumerate(stacks):
        y = bottom
        for label, value in values:
            if not value:
                continue
            h = value * scale
            y -= h
            bars.append(
                {
                    "x": round(CHART_LEFT + i * slot + slot * 0.1, 1),
                    "y": round(y, 1),
                    "width": round(slot * 0.8, 1),
                    "height": round(h, 1),
                    "fill": colours[label],
                    "title": f"{day:%Y-%m-%d} · {label}: {_with_unit(value, measure, currency)}",
                }
            )
    ticks = [
        {"y": round(bottom - half * plot_height / 2, 1), "label": _amount(peak * half / 2, measure)}
        for half in ((0, 1, 2) if peak else (0,))
    ]
    marked = sorted({0, len(days) // 2, len(days) - 1}) if days else []
    day_labels = [
        {"x": round(CHART_LEFT + (i + 0.5) * slot, 1), "label": f"{days[i]:%m-%d}"} for i in marked
    ]
    legend = [{"label": k, "fill": colours[k]} for k in [*shown, *(["…"] if others else [])]]
    return {"width": width, "height": height, "bars": bars, "legend": legend,
            "peak": _with_unit(peak, measure, currency), "first": days[0] if days else None,
            "last": days[-1] if days else None, "ticks": ticks, "days": day_labels,
            "left": CHART_LEFT, "right": width - CHART_RIGHT, "top": CHART_TOP,
            "bottom": bottom, "measure": measure, "currency": currency}  # fmt: skip


def _amount(value, measure):
    """An amount on a chart's axis, whose title gives the unit: grouped by thousands."""
    return f"{round(value):,}" if measure == "tokens" else f"{value:,.4f}"


def _with_unit(value, measure, currency):
    """An amount on its own: tokens counted as such, money with its currency."""
    if measure == "tokens":
        return _("%(count)s tokens") % {"count": _amount(value, measure)}
    return f"{currency} {_amount(value, measure)}"
