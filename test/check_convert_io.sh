#!/bin/sh
# check_convert_io.sh R1 HF_DIR FAULT: `r1 convert` under one I/O fault gives a clean error
# (exit 1, a message naming the cause), leaves no partial output and no temporary file, leaves a
# previous OUT and everything else in its directory untouched, and never modifies the source.
# FAULT is one of
#   full       the output's file system is full: a 1 MiB tmpfs (mounting needs root), else a
#              1 MiB file-size limit (RLIMIT_FSIZE, EFBIG), which any user can set
#   readonly   the output directory is read-only: a read-only tmpfs as root, else chmod a-w
#   truncated  a source shard is cut short (inside its tensor data, inside its header, empty),
#              or a source file is a FIFO
#   special    OUT is a symbolic link, a FIFO, a directory or a character device (the device
#              only where mknod is permitted): refused, never replaced
# Exits 77 (skipped) when this environment cannot produce FAULT.
set -u
R1=$1
SRC=$2
FAULT=$3
T=$(mktemp -d)
MNT=""
cleanup() {
    [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'cleanup; exit 1' INT TERM HUP # a timed-out test must not leave its tmpfs mounted
fail() {
    echo "FAIL ($FAULT): $*"
    exit 1
}
skip() {
    echo "SKIP ($FAULT): $*"
    exit 77
}

# A fingerprint of a directory: names, types, sizes and contents of everything in it.
fingerprint() {
    (cd "$1" && find . -print | LC_ALL=C sort | while IFS= read -r f; do
        if [ -L "$f" ]; then
            echo "$f link $(readlink "$f")"
        elif [ -f "$f" ]; then
            echo "$f file $(cksum <"$f")"
        elif [ -p "$f" ]; then
            echo "$f fifo"
        elif [ -c "$f" ]; then
            echo "$f chardev"
        else
            echo "$f other"
        fi
    done)
}

# expect_clean_failure DIR OUT PATTERN [CONVERT-PREFIX...]: converting into DIR/OUT fails with a
# message matching PATTERN and leaves DIR exactly as it was.
expect_clean_failure() {
    dir=$1 out=$2 pattern=$3
    shift 3
    before=$(fingerprint "$dir")
    src_before=$(fingerprint "$SRC_COPY")
    "$@" "$R1" convert "$SRC_COPY" "$dir/$out" >"$T/stdout" 2>"$T/err"
    rc=$?
    [ $rc -eq 1 ] || fail "convert into $dir/$out exits $rc, not 1: $(cat "$T/err")"
    grep -q "^r1 convert: R1_[A-Z_]*: .*$pattern" "$T/err" ||
        fail "the message does not match '$pattern': $(cat "$T/err")"
    after=$(fingerprint "$dir")
    [ "$before" = "$after" ] || fail "the output directory changed:
before: $before
after:  $after"
    [ "$src_before" = "$(fingerprint "$SRC_COPY")" ] || fail "the source changed"
    echo "ok: $(cat "$T/err")"
}

SRC_COPY=$T/src
cp -r "$SRC" "$SRC_COPY" || fail "cannot copy $SRC"
mkdir "$T/out"
printf 'previous model\n' >"$T/out/model.r1m"
printf 'a neighbour\n' >"$T/out/other.txt"

case $FAULT in
full)
    MNT=$T/small
    mkdir "$MNT"
    if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=1M tmpfs "$MNT" 2>/dev/null; then
        printf 'previous model\n' >"$MNT/model.r1m"
        printf 'a neighbour\n' >"$MNT/other.txt"
        expect_clean_failure "$MNT" model.r1m "No space left on device"
    else
        MNT=""
        echo "note: no tmpfs (not root, or mount refused); using a 1 MiB file-size limit"
        # dash counts ulimit -f in 512-byte blocks, bash in 1024: either is under the 1.4 MB
        # output. SIGXFSZ is ignored so that write() fails with EFBIG instead of killing.
        expect_clean_failure "$T/out" model.r1m "File too large" \
            sh -c 'ulimit -f 1024 && trap "" XFSZ && exec "$@"' limit
    fi
    ;;
readonly)
    if [ "$(id -u)" = 0 ]; then
        # root writes through permission bits: only a read-only file system stops it
        MNT=$T/ro
        mkdir "$MNT"
        mount -t tmpfs -o size=4M tmpfs "$MNT" 2>/dev/null || {
            MNT=""
            skip "running as root and mount is refused: no read-only directory can be made"
        }
        printf 'previous model\n' >"$MNT/model.r1m"
        printf 'a neighbour\n' >"$MNT/other.txt"
        mount -o remount,ro "$MNT" || skip "cannot remount the tmpfs read-only"
        expect_clean_failure "$MNT" model.r1m "Read-only file system"
    else
        chmod a-w "$T/out"
        expect_clean_failure "$T/out" model.r1m "Permission denied"
        chmod u+w "$T/out"
    fi
    ;;
truncated)
    shard=$SRC_COPY/model-00002-of-000003.safetensors
    [ -f "$shard" ] || skip "$SRC has no shard model-00002-of-000003.safetensors"
    size=$(wc -c <"$shard")
    cp "$shard" "$T/whole"
    for keep in $((size / 2)) $((size - 1)) 16 4 0; do
        head -c "$keep" "$T/whole" >"$shard"
        expect_clean_failure "$T/out" model.r1m "model-00002-of-000003"
    done
    # a FIFO in place of a source file used to block the converter forever in open()
    for f in "$shard" "$SRC_COPY/config.json"; do
        mv "$f" "$T/saved"
        mkfifo "$f" || fail "mkfifo"
        expect_clean_failure "$T/out" model.r1m "not a.* regular file" timeout 30
        rm "$f"
        mv "$T/saved" "$f"
    done
    cp "$T/whole" "$shard"
    ;;
special)
    printf 'the target\n' >"$T/out/target"
    ln -s target "$T/out/link.r1m"
    expect_clean_failure "$T/out" link.r1m "symbolic link"
    ln -s missing "$T/out/dangling.r1m"
    expect_clean_failure "$T/out" dangling.r1m "symbolic link"
    mkfifo "$T/out/fifo.r1m" || fail "mkfifo"
    expect_clean_failure "$T/out" fifo.r1m "FIFO"
    mkdir "$T/out/dir.r1m"
    expect_clean_failure "$T/out" dir.r1m "directory"
    # /dev/full's numbers (1, 7): the device that `r1 convert IN /dev/full` replaced as root
    if mknod "$T/out/full.r1m" c 1 7 2>/dev/null; then
        expect_clean_failure "$T/out" full.r1m "character device"
    else
        echo "note: mknod is not permitted here; the character-device case did not run"
    fi
    ;;
*)
    fail "unknown fault '$FAULT'"
    ;;
esac
# and after every fault, the same output converts (nothing stale blocks it)
"$R1" convert "$SRC_COPY" "$T/out/model.r1m" 2>"$T/err" || fail "a clean conversion: $(cat "$T/err")"
echo "convert I/O fault '$FAULT' ok"
