"""A stand-in for GitPython (tests only): Foolbox imports ``git.Repo`` for its model zoo,
which the tests never use. See tests/stubs/README.md."""


class Repo:
    def __init__(self, *args, **kwargs) -> None:
        raise RuntimeError("GitPython is not installed; this stub only satisfies an import")

    @classmethod
    def clone_from(cls, *args, **kwargs):
        raise RuntimeError("GitPython is not installed; this stub only satisfies an import")
