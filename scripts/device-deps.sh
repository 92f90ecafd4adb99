# Sourced by the scripts that build on the GPU machine (gpu-check.sh, sp-check.sh): the
# Debian packages that machine lacks come from .debs/ (made here by
# scripts/fetch-device-debs.sh, carried with the run), unpacked with dpkg -x into
# /tmp/fastdit-deps, which CMake reads through FASTDIT_DEPS_PREFIX; the binaries need
# their libraries at run time too. Nothing happens without .debs/.
if compgen -G ".debs/*.deb" >/dev/null; then
  FASTDIT_DEPS_PREFIX=/tmp/fastdit-deps
  for deb in .debs/*.deb; do dpkg -x "$deb" "$FASTDIT_DEPS_PREFIX"; done
  # dpkg -x runs no maintainer scripts: the alternatives link to OpenBLAS is ours to make.
  ln -sf openblas-pthread/libopenblas.so "$FASTDIT_DEPS_PREFIX/usr/lib/x86_64-linux-gnu/libopenblas.so"
  export FASTDIT_DEPS_PREFIX
  export LD_LIBRARY_PATH=$FASTDIT_DEPS_PREFIX/usr/lib/x86_64-linux-gnu:$FASTDIT_DEPS_PREFIX/usr/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "== using the Debian packages of .debs/ from $FASTDIT_DEPS_PREFIX"
fi
