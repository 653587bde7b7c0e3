"""Datasets: the embedded digits, ImageFolder (dir or .tar.gz), CIFAR-10 binary batches, MNIST IDX."""

from nnchip.data.augment import random_crop_flip
from nnchip.data.cifar_binary import load_cifar10_bin
from nnchip.data.digits import load_digits_split
from nnchip.data.imagefolder import load_cifar10_tar, load_imagefolder
from nnchip.data.mnist import load_mnist_idx
from nnchip.data.split import Split

__all__ = ["Split", "load_cifar10_bin", "load_cifar10_tar", "load_digits_split", "load_imagefolder",
           "load_mnist_idx", "random_crop_flip"]
