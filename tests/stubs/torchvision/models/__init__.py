from torchvision.models import resnet  # noqa: F401
