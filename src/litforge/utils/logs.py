import logging


def route_lightning_logs_to_root() -> None:
    """`import lightning` gives its logger a console handler of its own; under Hydra the root
    logger already writes to console and the run's log file, so every line came out twice."""
    import lightning  # noqa: F401

    logger = logging.getLogger("lightning")
    if logging.getLogger().handlers:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
