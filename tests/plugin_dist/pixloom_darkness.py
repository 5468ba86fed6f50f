"""Loss ``darkness``: pull the image's mean brightness down to ``target``."""
from dataclasses import dataclass

from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Loss


class Darkness(Loss):
    """Squared distance of the image's mean brightness to ``target``."""

    name = "darkness"
    version = "0.1.0"

    @dataclass
    class Params:
        target: float = 0.1  # the mean brightness to aim for, 0..1

    def forward(self, inputs):
        return (inputs.image.mean() - self.params.target) ** 2


@hookimpl
def pixloom_register_losses():
    return [Darkness]
