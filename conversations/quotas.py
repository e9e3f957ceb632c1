"""Quotas: what a user may still use this period, checked before a reply starts.

A request is admitted when the usage recorded in the ledger since the period began (what
is generating now counts there at its reservation: its prompt and its maximum output),
plus what this request may cost at most (its prompt estimate and its max_tokens), stays
within every quota that applies to the user: their own, and those of
each group they belong to. The ledger settles it afterwards, whatever the ending.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from conversations.models import Quota, UsageRecord


class QuotaExceeded(Exception):
    def __init__(self, message, *, used, limit, resets_at):
        super().__init__(message)
        self.used, self.limit, self.resets_at = used, limit, resets_at


def quotas_for(user):
    return Quota.objects.filter(Q(user=user) | Q(group__in=user.groups.all()))


def period_bounds(quota, now=None):
    """Start and end of the quota's current period, in the server's time zone."""
    local = timezone.localtime(now or timezone.now())
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if quota.period == Quota.Period.DAY:
        start, end = day, day + timedelta(days=1)
    elif quota.period == Quota.Period.WEEK:
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    if quota.reset_at and start < quota.reset_at < end:
        start = quota.reset_at
    return start, end


@dataclass
class Standing:
    """Where a user stands against one quota this period."""

    quota: Quota
    start: object
    end: object
    used_tokens: int
    used_cost: Decimal

    @property
    def token_limit(self):
        if self.quota.max_tokens is None:
            return None
        return self.quota.max_tokens + (self.quota.extra_tokens if self._extra_valid else 0)

    @property
    def cost_limit(self):
        if self.quota.max_cost is None:
            return None
        return self.quota.max_cost + (self.quota.extra_cost if self._extra_valid else 0)

    @property
    def _extra_valid(self):
        return self.quota.extra_until is not None and timezone.now() < self.quota.extra_until


def standings(user, now=None, limits=None):
    """The user's standing against each quota that applies to them (`limits`, when the
    caller has them already)."""
    result = []
    for quota in quotas_for(user) if limits is None else limits:
        start, end = period_bounds(quota, now)
        ledger = UsageRecord.objects.filter(user=user, created__gte=start)
        tokens = ledger.aggregate(total=Sum("total_tokens"))["total"] or 0
        cost = ledger.filter(currency=quota.currency).aggregate(total=Sum("cost"))["total"]
        result.append(Standing(quota, start, end, tokens, cost or Decimal(0)))
    return result


def max_concurrent(user, limits=None):
    limits = quotas_for(user) if limits is None else limits
    caps = [q.max_concurrent for q in limits if q.max_concurrent is not None]
    return min(caps, default=settings.CONFAB_USER_MAX_CONCURRENT)


def check(user, *, expected_tokens, expected_cost, currency, limits=None):
    """Refuse a request that would take the user past any quota; say by how much."""
    for standing in standings(user, limits=limits):
        resets = formats.date_format(timezone.localtime(standing.end), "DATETIME_FORMAT")
        period = standing.quota.get_period_display()
        limit = standing.token_limit
        if limit is not None and standing.used_tokens + expected_tokens > limit:
            raise QuotaExceeded(
                _(
                    "You have used %(used)s of your %(limit)s tokens this %(period)s and this "
                    "message may need up to %(expected)s more. Your quota resets on %(resets)s."
                )
                % {
                    "used": formats.number_format(standing.used_tokens, force_grouping=True),
                    "limit": formats.number_format(limit, force_grouping=True),
                    "expected": formats.number_format(expected_tokens, force_grouping=True),
                    "period": period,
                    "resets": resets,
                },
                used=standing.used_tokens,
                limit=limit,
                resets_at=standing.end,
            )
        limit = standing.cost_limit
        # This request's cost counts only in the quota's currency; usage already at the
        # limit refuses any request, priced or not.
        expected = expected_cost if standing.quota.currency == currency else 0
        if limit is not None and (
            standing.used_cost >= limit or standing.used_cost + expected > limit
        ):
            raise _over_money(standing, limit, expected, period, resets)


def _over_money(standing, limit, expected, period, resets):
    """The refusal of a money quota: used up, or without room for this request."""
    values = {
        "currency": standing.quota.currency,
        "used": formats.number_format(standing.used_cost, 2, force_grouping=True),
        "limit": formats.number_format(limit, 2, force_grouping=True),
        "expected": formats.number_format(expected, 4, force_grouping=True),
        "period": period,
        "resets": resets,
    }
    if standing.used_cost >= limit:
        message = _(
            "You have used %(currency)s %(used)s of your %(currency)s %(limit)s this "
            "%(period)s. Your quota resets on %(resets)s."
        )
    else:
        message = _(
            "You have used %(currency)s %(used)s of your %(currency)s %(limit)s this "
            "%(period)s, and this message may cost up to %(currency)s %(expected)s. "
            "Your quota resets on %(resets)s."
        )
    return QuotaExceeded(
        message % values, used=standing.used_cost, limit=limit, resets_at=standing.end
    )
