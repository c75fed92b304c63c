"""The engine: runs the handler chain for a request and guarantees a result.

Every request ends in a ``ResolveResult``: the first handler's answer; ``NOT_RESPONSIBLE``
when no handler claims the identifier; the outcome of an ``IdnodeError``; or ``INTERNAL`` for
anything else (logged here once, since it is a bug or a corrupt store).
"""

from __future__ import annotations

import logging
from typing import Iterable

from resolver.core.chain import Handler
from resolver.core.request import ResolveRequest, ResolveResult
from resolver.errors import IdnodeError, Outcome

log = logging.getLogger("idnode.engine")

NOT_HERE = "That prefix doesn't live here"


class Resolver:
    def __init__(self, handlers: Iterable[Handler]) -> None:
        self.handlers = tuple(handlers)

    async def resolve(self, request: ResolveRequest) -> ResolveResult:
        try:
            for handler in self.handlers:
                result = await handler.resolve(request)
                if result is not None:
                    return result
        except IdnodeError as exc:
            if exc.outcome is Outcome.INTERNAL:
                log.error("E001 %s resolving %s: %s", type(exc).__name__, request.identifier, exc)
            return ResolveResult(exc.outcome, message=exc.message)
        except Exception:
            log.exception("E002 unexpected error resolving %s", request.identifier)
            return ResolveResult(Outcome.INTERNAL, message="Internal error")
        return ResolveResult(Outcome.NOT_RESPONSIBLE, message=NOT_HERE)
