"""The in-memory reference presence implementation.

- `types`: the data types (`PresenceMessage`, `Action`, data validation).
- `errors`: `PresenceError`, the typed error every invalid call raises, with its Ably code.
- `model`: `PresenceModel`, pure, synchronous and deterministic: the oracle of every check.
- `service`: an asyncio service with the seed's API on top of the model.
- `client_presence`: `ClientPresence`, the client-side oracle: what a conforming client's
  presence map does with the frames it receives (RTP1, RTP2, RTP5, RTP18, RTP19, TP3).
- `client_presence_bridge`: `OracleMapState`, the harness client's presence-map surface over it.
"""

from presence_conformance.reference_impl.errors import PresenceError
from presence_conformance.reference_impl.model import PresenceModel
from presence_conformance.reference_impl.types import Action, PresenceMessage

__all__ = ["Action", "PresenceError", "PresenceMessage", "PresenceModel"]
