# Shared by bin/gatehouse and bin/test: find the Swift toolchain and the C libraries Gatehouse links against,
# installing the Debian packages when running as root, or naming what to install otherwise.

require_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        for candidate in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
            if [ -x "$candidate/swift" ]; then
                export PATH="$candidate:$PATH"
                break
            fi
        done
    fi
    if ! command -v swift >/dev/null 2>&1; then
        echo "gatehouse: no Swift toolchain found. Install Swift 6 (https://www.swift.org/install/linux/) and put 'swift' on PATH." >&2
        exit 1
    fi
}

# apt_install PACKAGE...: installs the missing Debian packages as root, or says which to install.
apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "gatehouse: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 || true
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || {
            echo "gatehouse: could not install ${missing[*]}; install them with: apt-get install ${missing[*]}" >&2
            exit 1
        }
        # The tests and benchmarks start their own Mosquitto on free ports: a package we just installed must not
        # leave a system broker running on 1883, where Gatehouse's shipped config listens.
        if printf '%s\n' "${missing[@]}" | grep -qx mosquitto; then
            systemctl disable --now mosquitto >/dev/null 2>&1 || service mosquitto stop >/dev/null 2>&1 || true
        fi
    else
        echo "gatehouse: missing system packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
}

require_build_libraries() {
    if command -v dpkg-query >/dev/null 2>&1; then
        apt_install libssl-dev libcurl4-openssl-dev libsqlite3-dev pkg-config
    elif ! pkg-config --exists openssl libcurl sqlite3 2>/dev/null; then
        echo "gatehouse: OpenSSL 3, libcurl and SQLite development files are required (Debian: libssl-dev libcurl4-openssl-dev libsqlite3-dev pkg-config)." >&2
        exit 1
    fi
}

# require_python_test_packages: makes sure a Python 3 with pytest and paho-mqtt 2 is there (pip, else Debian
# packages) and prints its path.
require_python_test_packages() {
    local python=python3
    if ! "$python" -c 'import pytest, paho.mqtt' >/dev/null 2>&1; then
        "$python" -m pip install -q pytest 'paho-mqtt>=2,<3' >&2 2>/dev/null \
            || "$python" -m pip install -q --break-system-packages pytest 'paho-mqtt>=2,<3' >&2 2>/dev/null || {
            apt_install python3 python3-pytest python3-pip
            python=/usr/bin/python3
            "$python" -m pip install -q --break-system-packages 'paho-mqtt>=2,<3' >&2
        }
    fi
    echo "$python"
}
