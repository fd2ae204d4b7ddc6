# Every image in one command, from the repository root:
#   docker buildx bake -f deploy/docker/docker-bake.hcl            # CPU images, tag VERSION
#   docker buildx bake -f deploy/docker/docker-bake.hcl cuda       # hf, trl, unsloth with CUDA torch, tag VERSION-cuda
#   REGISTRY=ghcr.io/acme VERSION=0.1.0 docker buildx bake -f deploy/docker/docker-bake.hcl --push
# The names match deploy/k8s (images: forgeway/NAME); kustomize's `images:` points them at your registry.

variable "REGISTRY" { default = "forgeway" }
variable "VERSION" { default = "0.1.0" }
variable "CUDA_TORCH_INDEX_URL" { default = "https://download.pytorch.org/whl/cu128" }
# e.g. TRAINER_EXTRAS=deepspeed for the DeepSpeed accelerate config (it needs the CUDA toolkit for its JIT ops).
variable "TRAINER_EXTRAS" { default = "" }

group "default" { targets = ["gateway", "openai", "llamacpp", "hf", "trl", "echo"] }
group "cuda" { targets = ["hf-cuda", "trl-cuda", "unsloth-cuda"] }

target "_common" {
  context    = "."
  dockerfile = "deploy/docker/Dockerfile"
  platforms  = ["linux/amd64"]
}

target "gateway" {
  inherits = ["_common"]
  target   = "gateway"
  tags     = ["${REGISTRY}/gateway:${VERSION}"]
}

target "openai" {
  inherits = ["_common"]
  target   = "openai"
  tags     = ["${REGISTRY}/openai:${VERSION}"]
}

target "echo" {
  inherits = ["_common"]
  target   = "echo"
  tags     = ["${REGISTRY}/echo:${VERSION}"]
}

target "llamacpp" {
  inherits = ["_common"]
  target   = "llamacpp"
  tags     = ["${REGISTRY}/llamacpp:${VERSION}"]
}

target "hf" {
  inherits = ["_common"]
  target   = "hf"
  tags     = ["${REGISTRY}/hf:${VERSION}"]
}

target "trl" {
  inherits = ["_common"]
  target   = "trl"
  tags     = ["${REGISTRY}/trl:${VERSION}"]
}

target "hf-cuda" {
  inherits = ["_common"]
  target   = "hf"
  args     = { TORCH_INDEX_URL = "${CUDA_TORCH_INDEX_URL}" }
  tags     = ["${REGISTRY}/hf:${VERSION}-cuda"]
}

target "trl-cuda" {
  inherits = ["_common"]
  target   = "trl"
  args     = { TORCH_INDEX_URL = "${CUDA_TORCH_INDEX_URL}", TRAINER_EXTRAS = "${TRAINER_EXTRAS}" }
  tags     = ["${REGISTRY}/trl:${VERSION}-cuda"]
}

target "unsloth-cuda" {
  inherits = ["_common"]
  target   = "unsloth"
  args     = { TORCH_INDEX_URL = "${CUDA_TORCH_INDEX_URL}" }
  tags     = ["${REGISTRY}/unsloth:${VERSION}-cuda"]
}
