#!/bin/bash
# mkimage.sh OUTDIR - the small guest image of scripts/qemu/guests.sh:
#   OUTDIR/vmlinuz     Debian's kernel (linux-image-amd64's current image,
#                      taken out of the .deb with apt-get download and
#                      dpkg-deb: the host's /boot is not touched), or
#                      $SP_QEMU_KERNEL if set
#   OUTDIR/initrd.gz   busybox-static, /init and guest-fill (built static
#                      from guest-fill.c next to this script)
# Each part is made only if missing (delete it to rebuild).  As root it
# installs busybox-static when missing.
set -eu

out=${1:?usage: mkimage.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

need_pkg() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" && return 0
	[ "$(id -u)" = 0 ] || { echo "mkimage: install $1 (apt-get install $1)" >&2; exit 1; }
	echo "mkimage: installing $1" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1" >/dev/null ||
		{ apt-get update -q >/dev/null &&
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1" >/dev/null; }
}

# --- the kernel -------------------------------------------------------------
if [ ! -s "$out/vmlinuz" ]; then
	if [ -n "${SP_QEMU_KERNEL:-}" ]; then
		cp "$SP_QEMU_KERNEL" "$out/vmlinuz"
	else
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		      awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
		if [ -z "$pkg" ]; then
			apt-get update -q >/dev/null
			pkg=$(apt-cache depends linux-image-amd64 |
			      awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
		fi
		[ -n "$pkg" ] || { echo "mkimage: no linux-image-amd64 in apt" >&2; exit 1; }
		tmp=$(mktemp -d)
		# apt's sandbox user must be able to write the download dir
		chmod 755 "$tmp"
		(cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
			{ apt-get update -q >/dev/null; (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1); }
		dpkg-deb --fsys-tarfile "$tmp"/"$pkg"_*.deb |
			tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
		cp "$tmp"/boot/vmlinuz-* "$out/vmlinuz"
		echo "$pkg" > "$out/vmlinuz.pkg"
		rm -rf "$tmp"
	fi
	echo "mkimage: kernel $(cat "$out/vmlinuz.pkg" 2>/dev/null || echo "${SP_QEMU_KERNEL:-}")" >&2
fi

# --- the initramfs ----------------------------------------------------------
if [ ! -s "$out/initrd.gz" ] || [ "$here/guest-fill.c" -nt "$out/initrd.gz" ] ||
   [ "$0" -nt "$out/initrd.gz" ]; then
	need_pkg busybox-static
	need_pkg cpio
	root=$(mktemp -d)
	mkdir -p "$root"/{bin,dev,proc,sys,tmp}
	cp /bin/busybox "$root/bin/busybox"
	ln -s busybox "$root/bin/sh"
	gcc -O2 -static -Wall -o "$root/bin/guest-fill" "$here/guest-fill.c"
	# /dev/console for init's first stdout (the kernel opens it before
	# /init runs; devtmpfs comes later)
	mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
	cat > "$root/init" <<'EOF'
#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
fill=64; check=10
for a in $(cat /proc/cmdline); do
	case "$a" in
	fill_mib=*) fill=${a#fill_mib=} ;;
	check_s=*) check=${a#check_s=} ;;
	esac
done
echo "GUEST-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime) fill_mib=$fill"
exec /bin/guest-fill "$fill" "$check"
EOF
	chmod 755 "$root/init"
	(cd "$root" && find . | sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$out/initrd.gz.tmp"
	mv "$out/initrd.gz.tmp" "$out/initrd.gz"
	rm -rf "$root"
	echo "mkimage: initramfs $(du -k "$out/initrd.gz" | cut -f1) KiB" >&2
fi
