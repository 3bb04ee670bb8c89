"""runba.vision: image datasets and transforms, like ``torchvision``.

>>> from runba.vision import datasets, transforms
>>> tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
>>> train = datasets.Digits(train=True, transform=tf)  # doctest: +SKIP
>>> x, y = train[0]  # doctest: +SKIP
>>> x.shape  # doctest: +SKIP
runba.Size([1, 28, 28])
"""

from runba.vision import datasets, transforms

__all__ = ["datasets", "transforms"]
