"""A small model zoo whose weights interoperate: LeNet-5, VGG-16, ResNet-18/50, MobileNetV2,
ViT-Tiny, a BERT encoder and a GPT-2 decoder.

Each model is an fnn :class:`~fnn.Layer` laid out as torchvision (the CNNs) or
Hugging Face ``transformers`` (:func:`bert`, :func:`gpt2`, :func:`vit`) build it,
so their ``state_dict`` or ``model.safetensors`` loads unchanged with
:func:`fnn.interop.load_torch`: a layer's PyTorch name is its fnn path with
``.`` for ``/``, and the children of a ``Sequential`` that keep their default
names are numbered as ``nn.Sequential`` numbers them. Like
``keras.applications``, every builder takes ``num_classes``, ``include_top``
(``False`` for the feature extractor of transfer learning) and ``pooling``;
inputs are channels-last images ``(batch, H, W, 3)`` normalised by
:func:`preprocess_input` (torchvision's ImageNet normalisation).

The general constructors :func:`ResNet`, :func:`VGG` and :func:`MobileNetV2`
build the other members of those families (ResNet-34/101/152 are
``ResNet("basic", [3, 4, 6, 3])``, ``ResNet("bottleneck", [3, 4, 23, 3])`` and
``ResNet("bottleneck", [3, 8, 36, 3])``; VGG-11/13/19 take torchvision's
``cfgs["A"]``, ``["B"]``, ``["E"]``).

Example:
    Save torchvision's weights once as safetensors, outside fnn (nothing here
    unpickles)::

        import safetensors.torch, torchvision
        weights = torchvision.models.resnet50(weights="DEFAULT").state_dict()
        safetensors.torch.save_file(weights, "resnet50.safetensors")

    then load them with one call and classify::

        model = models.resnet50()
        params, state, report = interop.load_torch(model, (224, 224, 3), "resnet50.safetensors")
        logits, _ = model.apply(params, state, models.preprocess_input(images), train=False)

    >>> import fnn
    >>> from fnn import models
    >>> fnn.output_shape(models.resnet18(include_top=False), (224, 224, 3))  # for transfer learning
    (7, 7, 512)
"""

from fnn.models._bert import bert
from fnn.models._common import IMAGENET_MEAN, IMAGENET_STD, preprocess_input
from fnn.models._gpt2 import gpt2, gpt2_lm_head
from fnn.models._lenet import lenet5
from fnn.models._mobilenet import MOBILENET_V2_SETTING, MobileNetV2, mobilenet_v2
from fnn.models._resnet import ResNet, resnet18, resnet50
from fnn.models._vgg import VGG, VGG16_CFG, vgg16
from fnn.models._vit import VIT_MEAN, VIT_STD, vit, vit_preprocess_input, vit_tiny

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MOBILENET_V2_SETTING",
    "VGG16_CFG",
    "MobileNetV2",
    "ResNet",
    "VGG",
    "VIT_MEAN",
    "VIT_STD",
    "bert",
    "gpt2",
    "gpt2_lm_head",
    "lenet5",
    "mobilenet_v2",
    "preprocess_input",
    "resnet18",
    "resnet50",
    "vgg16",
    "vit",
    "vit_preprocess_input",
    "vit_tiny",
]
