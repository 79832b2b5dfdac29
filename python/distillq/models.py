"""models.py - the PyTorch knowledge-distillation tutorial's networks
(https://pytorch.org/tutorials/beginner/knowledge_distillation_tutorial.html)
for 1x28x28 inputs (Fashion-MNIST), with the module paths of distillq's
models/deepnn-fmnist.model and lightnn-fmnist.model, so a state_dict and a
distillq safetensors file hold the same tensors under the same names.

    distillq-torch-teacher --model distillq.models:LightNN ...
"""
import torch
from torch import nn


class DeepNN(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, side=28):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 128, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 64, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(64, 64, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 32, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        flat = 32 * (side // 4) * (side // 4)
        self.classifier = nn.Sequential(nn.Linear(flat, 512), nn.ReLU(), nn.Dropout(0.1),
                                        nn.Linear(512, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class LightNN(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, side=28):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(16, 16, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        flat = 16 * (side // 4) * (side // 4)
        self.classifier = nn.Sequential(nn.Linear(flat, 256), nn.ReLU(), nn.Dropout(0.1),
                                        nn.Linear(256, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))
