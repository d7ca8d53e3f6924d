"""python -m k8sim_engine: serve the monitoring engine on the configured address."""

from __future__ import annotations

import uvicorn

from k8sim.settings import tune_gc

from .settings import EngineSettings


def main() -> None:
    settings = EngineSettings()
    tune_gc(settings)
    uvicorn.run("k8sim_engine.app:create_app", factory=True, host=settings.bind_address, port=settings.engine_port,
                log_level=settings.log_level.lower(), access_log=False)


if __name__ == "__main__":
    main()
