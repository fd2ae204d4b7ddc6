"""`python -m forgeway.gateway.http --target HOST:PORT`: the shim on its own, in front of any forgeway.v1 endpoint."""

from .serve import main

raise SystemExit(main())
