"""E-licences (电子证照) and e-seals (电子印章): issuing, status changes, verification online
and offline, the seal registry and the status lists (the pure rules are in
:mod:`gateway.core.licences`, :mod:`gateway.core.seals` and :mod:`gateway.core.status_lists`)."""
