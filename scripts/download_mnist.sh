#!/usr/bin/env bash
# download_mnist.sh — fetch the four MNIST .gz files, verified by SHA-256.
# Run with --help for usage. Every file is downloaded (or copied) to a temporary file
# in the target folder, checked against the checksum below, and only then renamed into
# place, so an interrupted or corrupt download never leaves a file that looks valid.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/download_mnist.sh [--dir DIR] [--from SRC]

Gets the four MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into DIR and checks each
against its known SHA-256.

  --dir DIR    where to put the files (default: data/mnist, relative to the current
               directory, which is where the kitnn programs look by default)
  --from SRC   copy the files from the local folder SRC instead of downloading
               (for machines without internet; the copies are verified too)
  -h, --help   show this help

Files already in DIR with the right checksum are kept (nothing is downloaded);
a file with a wrong checksum is reported and replaced. Downloads use curl (or wget)
and try these mirrors in turn (override with MNIST_MIRRORS="URL1 URL2 ..."):
  https://ossci-datasets.s3.amazonaws.com/mnist/
  https://storage.googleapis.com/cvdf-datasets/mnist/
  http://yann.lecun.com/exdb/mnist/

The programs find the data with --data DIR or the KITNN_MNIST_DIR environment
variable, else data/mnist. Exit status: 0 when all four files are present and
verified, 1 when one could not be obtained, 2 on a usage error.
EOF
}

# name -> SHA-256 of the original gzipped files (LeCun, Cortes, Burges).
declare -A SHA256=(
    [train-images-idx3-ubyte.gz]=440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
    [train-labels-idx1-ubyte.gz]=3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
    [t10k-images-idx3-ubyte.gz]=8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
    [t10k-labels-idx1-ubyte.gz]=f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
)
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
read -r -a MIRRORS <<<"${MNIST_MIRRORS:-https://ossci-datasets.s3.amazonaws.com/mnist/ https://storage.googleapis.com/cvdf-datasets/mnist/ http://yann.lecun.com/exdb/mnist/}"

die() { echo "download_mnist.sh: error: $*" >&2; exit 1; }
usage_error() { echo "download_mnist.sh: $*" >&2; echo "Run with --help for usage." >&2; exit 2; }

DIR=data/mnist
FROM=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dir) [[ $# -ge 2 && -n "$2" ]] || usage_error "--dir needs a folder"; DIR=$2; shift 2 ;;
        --dir=*) DIR=${1#--dir=}; shift ;;
        --from) [[ $# -ge 2 && -n "$2" ]] || usage_error "--from needs a folder"; FROM=$2; shift 2 ;;
        --from=*) FROM=${1#--from=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
done
[[ -z "$FROM" || -d "$FROM" ]] || die "--from $FROM: no such folder"

if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    die "neither sha256sum nor shasum found: cannot verify the files"
fi

# The temporary file being written, removed on any exit or signal so a half-written
# download is never left behind; and the running download, stopped with us.
TMP=
FETCH_PID=
cleanup() {
    if [[ -n "$FETCH_PID" ]]; then kill "$FETCH_PID" 2>/dev/null || true; fi
    if [[ -n "$TMP" ]]; then rm -f -- "$TMP"; fi
}
trap cleanup EXIT
trap 'cleanup; trap - INT; kill -INT $$' INT
trap 'cleanup; exit 143' TERM HUP

# fetch URL OUT: download with a bounded time, so a dead network fails in seconds,
# not minutes. Returns non-zero on any failure (HTTP errors included). The download
# runs in the background and we `wait` for it: bash runs a signal trap only once the
# foreground command ends, but interrupts `wait` at once.
fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl --fail --location --silent --show-error --connect-timeout 10 --max-time 300 \
             --output "$2" "$1" &
    elif command -v wget >/dev/null 2>&1; then
        wget --quiet --tries=1 --timeout=10 --output-document="$2" "$1" &
    else
        echo "neither curl nor wget found" >&2
        return 1
    fi
    FETCH_PID=$!
    local rc=0
    wait "$FETCH_PID" || rc=$?
    FETCH_PID=
    return "$rc"
}

mkdir -p -- "$DIR" || die "cannot create $DIR"
for f in "${FILES[@]}"; do
    want=${SHA256[$f]}
    dest=$DIR/$f
    if [[ -f "$dest" ]]; then
        have=$(sha256 "$dest")
        if [[ "$have" == "$want" ]]; then
            echo "$dest: present, checksum OK"
            continue
        fi
        echo "$dest: present but its SHA-256 is $have, expected $want: replacing it" >&2
    fi

    TMP=$(mktemp "$DIR/.$f.XXXXXX")
    ok=
    if [[ -n "$FROM" ]]; then
        src=$FROM/$f
        if [[ ! -f "$src" ]]; then
            die "$src: not found (--from $FROM must hold the four .gz files)"
        fi
        cp -- "$src" "$TMP" || die "cannot copy $src to $DIR"
        have=$(sha256 "$TMP")
        [[ "$have" == "$want" ]] || die "$src: SHA-256 is $have, expected $want (corrupt copy?)"
        ok=1
        echo "$dest: copied from $src, checksum OK"
    else
        for mirror in "${MIRRORS[@]}"; do
            url=${mirror%/}/$f
            echo "$f: downloading $url"
            if ! fetch "$url" "$TMP"; then
                echo "$f: download from $url failed" >&2
                continue
            fi
            have=$(sha256 "$TMP")
            if [[ "$have" != "$want" ]]; then
                echo "$f: $url gave SHA-256 $have, expected $want: trying the next mirror" >&2
                continue
            fi
            ok=1
            echo "$dest: downloaded, checksum OK"
            break
        done
    fi
    if [[ -z "$ok" ]]; then
        die "could not download $f from any mirror (${MIRRORS[*]}).
  Without internet, copy the files from a machine that has them:
    scripts/download_mnist.sh --from SRC --dir $DIR
  or put the four .gz files into a folder yourself and pass it to the programs
  with --data DIR or KITNN_MNIST_DIR=DIR."
    fi
    chmod 0644 -- "$TMP"  # mktemp makes 0600 files; data files should be readable
    mv -f -- "$TMP" "$dest"
    TMP=
done
echo "MNIST ready in $DIR"
