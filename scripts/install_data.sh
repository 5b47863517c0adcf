#!/usr/bin/env bash
# Install the offline datasets the default experiment uses, where this machine allows it.
# Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package; elsewhere ganforge
# falls back to torchvision's download at training time.
set -euo pipefail

fmnist=/usr/share/datasets/fashion-mnist
if [ -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
  echo "Fashion-MNIST: found in $fmnist"
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq dataset-fashion-mnist
else
  echo "Fashion-MNIST: not installed and apt-get is not usable here (needs root on Debian/Ubuntu);"
  echo "  ganforge will try torchvision's download into data/ when training starts."
fi
