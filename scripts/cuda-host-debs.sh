#!/usr/bin/env bash
# Downloads, on a Debian 12 machine, the .deb files that scripts/cuda-host-build.sh unpacks on a CUDA host
# whose image has torch, nvcc, cmake and ninja but none of kvc's C++ libraries (gRPC, Protobuf, Abseil,
# ...). The set is the closure of kvc's -dev packages minus the base system every such image already has
# (libc, libstdc++, Kerberos, GnuTLS, ...), about 25 MB.
#
#   scripts/cuda-host-debs.sh DIR
set -euo pipefail
DIR="${1:?usage: cuda-host-debs.sh DIR}"
DEV=(libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev prometheus-cpp-dev
     libhiredis-dev libzstd-dev libxxhash-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libpcre2-dev
     libutf8proc-dev libsentencepiece-dev libgtest-dev libgmock-dev libbenchmark-dev libssl-dev zlib1g-dev pkgconf)
BASE='^(catch2|gcc-[0-9]+-base|libc6|libc6-dev|libc-dev-bin|libcrypt1|libcrypt-dev|linux-libc-dev|libstdc\+\+6|'
BASE+='libgcc-s1|libgnutls30|libgmp10|libhogweed6|libnettle8|libidn2-0|libunistring2|libp11-kit0|libtasn1-6|'
BASE+='libffi8|libkrb5-3|libkrb5support0|libgssapi-krb5-2|libk5crypto3|libcom-err2|libkeyutils1|libldap-.*|'
BASE+='libsasl2-.*|libdb5.3|libnsl-dev|libnsl2|libtirpc-.*|libtirpc3|rpcsvc-proto|libbrotli1|libnghttp2-14|'
BASE+='libpsl5|librtmp1|libssh2-1)$'
mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances --no-pre-depends "${DEV[@]}" | grep -v '^[ <]' | sort -u | grep -Ev "$BASE")
mkdir -p "$DIR"
cd "$DIR"
apt-get download "${pkgs[@]}" > /dev/null
echo "cuda-host-debs: ${#pkgs[@]} packages, $(du -sh . | cut -f1) in $DIR"
