"""Jittered exponential backoff, shared by every caller that retries."""

import random


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, …): about base·2^(attempt-1), capped."""
    return min(cap, base * 2.0 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)
