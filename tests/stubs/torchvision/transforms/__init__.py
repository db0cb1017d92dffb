from torchvision.transforms import functional  # noqa: F401


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("torchvision stub: transforms are not available in tests")


Compose = Normalize = ToTensor = _Unavailable
