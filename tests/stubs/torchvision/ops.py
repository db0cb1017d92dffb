def box_iou(*args, **kwargs):
    raise NotImplementedError("torchvision stub: box_iou is not available in tests")
