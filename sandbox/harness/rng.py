"""One stream of random numbers across the boundary, as in one process.

In one process, a test's `torch.manual_seed(0)` seeds the student's code too, and what the student's
code draws advances the test's stream. Each side keeps an Rng and sends, with each request or reply,
the generator states that changed since the last exchange; the other side takes them.
"""

import sys


class Rng:
    """The global random generators (random, numpy's legacy one, torch's CPU one) of one side."""

    def __init__(self):
        self.last: dict[str, bytes] = {}

    @staticmethod
    def _states() -> dict:
        import random

        states = {"random": random.getstate()}
        if (numpy := sys.modules.get("numpy")) is not None:
            states["numpy"] = numpy.random.get_state()
        if (torch := sys.modules.get("torch")) is not None:
            states["torch"] = torch.get_rng_state()
        return states

    @staticmethod
    def _key(name: str, state) -> bytes:
        if name == "torch":
            return state.numpy().tobytes()
        if name == "numpy":
            return repr((state[0], state[2:])).encode() + state[1].tobytes()
        return repr(state).encode()

    def changed(self) -> dict:
        """The states that changed since the last exchange (and note them as exchanged)."""
        out = {}
        for name, state in self._states().items():
            key = self._key(name, state)
            if self.last.get(name) != key:
                out[name] = state
                self.last[name] = key
        return out

    def apply(self, states: dict) -> None:
        """Take the other side's states, for the libraries loaded here."""
        import random

        for name, state in states.items():
            if name == "random":
                random.setstate((state[0], tuple(state[1]), state[2]))
            elif name == "numpy" and (numpy := sys.modules.get("numpy")) is not None:
                numpy.random.set_state((state[0], state[1], state[2], state[3], state[4]))
            elif name == "torch" and (torch := sys.modules.get("torch")) is not None:
                torch.set_rng_state(state)
            else:
                continue
            self.last[name] = self._key(name, self._states()[name])


def check_rng(states) -> dict:
    """S's states, as H decoded them, if they have the shapes of real ones; ValueError if not."""
    if type(states) is not dict:
        raise ValueError("random states that are not a dict")
    out = {}
    for name, state in states.items():
        if name == "random":
            if not (
                type(state) is tuple
                and len(state) == 3
                and type(state[0]) is int
                and type(state[1]) is tuple
                and len(state[1]) == 625
                and all(type(n) is int for n in state[1])
                and (state[2] is None or type(state[2]) is float)
            ):
                raise ValueError("a malformed state of random")
        elif name == "numpy":
            if not (
                type(state) is tuple
                and len(state) == 5
                and state[0] == "MT19937"
                and getattr(state[1], "shape", None) == (624,)
                and str(state[1].dtype) == "uint32"
            ):
                raise ValueError("a malformed state of numpy.random")
        elif name == "torch":
            torch = sys.modules.get("torch")
            if torch is None or not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
                raise ValueError("a malformed state of torch's generator")
        else:
            raise ValueError("a state of an unknown generator")
        out[name] = state
    return out
