#!/bin/sh
# usage: check_install.sh BUILD_DIR SOURCE_DIR
# Installs BUILD_DIR into a scratch prefix, extracts the first C example of README.md,
# and builds it (and a C++ consumer) with find_package(auraio) and with pkg-config.
set -eu
build=$1
src=$2
work=$(mktemp -d /tmp/auraio-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
# The README's C example, exactly as shown.
awk '/^```c$/ { on = 1; next } /^```$/ { if (on) exit } on' "$src/README.md" \
	>"$work/readme_example.c"
[ -s "$work/readme_example.c" ] || { echo "no C example in README.md"; exit 1; }
cp "$src/tests/install/consumer/CMakeLists.txt" "$src/tests/install/consumer/cpp_consumer.cpp" "$work/"
cmake -S "$work" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
LD_LIBRARY_PATH="$work/prefix/lib:${LD_LIBRARY_PATH:-}" "$work/build/readme_example"
"$work/build/cpp_consumer"
# pkg-config route
libdir=$(ls -d "$work"/prefix/lib*/pkgconfig | head -n1)
PKG_CONFIG_PATH="$libdir" cc "$work/readme_example.c" -o "$work/readme_pc" \
	$(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs auraio)
LD_LIBRARY_PATH="$work/prefix/lib:${LD_LIBRARY_PATH:-}" "$work/readme_pc" >/dev/null
echo "install, find_package, pkg-config and README example: ok"
