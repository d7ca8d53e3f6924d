"""python -m k8sim_api: serve the API with uvicorn on the configured address."""

from __future__ import annotations

import uvicorn

from k8sim.settings import tune_gc
from k8sim_api.core.config import get_settings


def main() -> None:
    settings = get_settings()
    tune_gc(settings)
    uvicorn.run("k8sim_api.main:create_app", factory=True, host=settings.bind_address, port=settings.api_port,
                log_level=settings.log_level.lower(), access_log=False,
                ws_per_message_deflate=settings.ws_compression)


if __name__ == "__main__":
    main()
