#!/bin/bash
# Builds the unroot test VM image (kernel, initrd, compressed qcow2 rootfs).
# Usage: build-image.sh MIRROR SUITE OUTDIR
# Runs as root on a Debian host. Everything in this file and in guest/ is
# part of the cache key computed by run.sh: change either and the image is
# rebuilt. Output is verbose; the caller sends it to a log file.
set -euo pipefail

mirror=$1 suite=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)

# Packages of the guest. The lead's e2e tests inside the VM need uidmap
# (newuidmap), fuse-overlayfs, slirp4netns/passt and iproute2.
PKGS=systemd,systemd-sysv,udev,kmod,dbus,dbus-user-session,libpam-systemd,uidmap,fuse-overlayfs,slirp4netns,passt,iproute2,linux-image-amd64

TESTUSER=tester
TESTUID=1000

work=$(mktemp -d /var/tmp/unroot-vm-build.XXXXXX)
cleanup() {
	for m in proc sys dev; do umount -l "$work/root/$m" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
root=$work/root

# initramfs-tools must be configured before the kernel package is installed
# (its postinst builds the initrd): a small initrd with just what mounts
# /dev/vda. MODULES=dep would inspect the host; /etc/initramfs-tools/modules
# is a conffile, so the list goes into a hook instead.
mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/etc/initramfs-tools/hooks"
printf 'MODULES=list\nCOMPRESS=gzip\n' >"$root/etc/initramfs-tools/conf.d/unroot-vm.conf"
cat >"$root/etc/initramfs-tools/hooks/unroot-vm" <<'HOOK'
#!/bin/sh
case "$1" in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
for m in virtio_pci virtio_blk ext4 crc32c_generic; do
	manual_add_modules "$m"
	echo "$m" >>"${DESTDIR}/conf/modules"
done
HOOK
chmod 0755 "$root/etc/initramfs-tools/hooks/unroot-vm"

echo "== debootstrap $suite from $mirror"
debootstrap --variant=minbase --include="$PKGS" "$suite" "$root" "$mirror"

echo "== configure"
echo unroot-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 unroot-vm\n' >"$root/etc/hosts"
: >"$root/etc/fstab"
chroot "$root" passwd -d root
chroot "$root" useradd -m -u "$TESTUID" -s /bin/bash "$TESTUSER"
echo "$TESTUSER:100000:65536" >"$root/etc/subuid"
echo "$TESTUSER:100000:65536" >"$root/etc/subgid"
# Lingering without loginctl: the user manager starts at boot.
mkdir -p "$root/var/lib/systemd/linger"
touch "$root/var/lib/systemd/linger/$TESTUSER"
# Nothing on the console, nothing periodic, no network waits.
for u in getty@tty1.service serial-getty@ttyS0.service console-getty.service \
	systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
	e2scrub_all.timer e2scrub_reap.service fstrim.timer man-db.timer \
	systemd-networkd-wait-online.service systemd-pstore.service; do
	ln -sf /dev/null "$root/etc/systemd/system/$u"
done

# The test runner, and the generator that adds the Delegate= drop-in when
# the kernel command line says unroot.delegate=1.
install -m 0755 "$here/guest/unroot-vm-test" "$root/usr/local/sbin/unroot-vm-test"
install -m 0644 "$here/guest/unroot-vm-test.service" "$root/etc/systemd/system/unroot-vm-test.service"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants" "$root/etc/systemd/system-generators"
ln -sf ../unroot-vm-test.service "$root/etc/systemd/system/multi-user.target.wants/unroot-vm-test.service"
install -m 0755 "$here/guest/unroot-delegate-generator" "$root/etc/systemd/system-generators/unroot-delegate"
mkdir -p "$root/mnt/xfer"

echo "== kernel and initrd"
mkdir -p "$out"
cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"
ls -l "$out"

echo "== shrink"
rm -rf "$root"/boot/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
	"$root"/usr/share/locale/* "$root"/var/cache/apt/archives/*.deb \
	"$root"/var/lib/apt/lists/* "$root"/usr/lib/firmware
kmods=$(echo "$root"/lib/modules/*)
for d in drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet \
	drivers/infiniband drivers/staging drivers/bluetooth drivers/iio drivers/usb \
	drivers/scsi drivers/hid drivers/input drivers/isdn drivers/mtd drivers/video \
	drivers/net/can drivers/hwmon drivers/nfc drivers/thunderbolt sound \
	net/wireless net/mac80211 net/bluetooth net/sunrpc fs/nfs fs/nfsd \
	fs/ocfs2 fs/xfs fs/btrfs fs/ceph fs/smb fs/gfs2; do
	rm -rf "${kmods:?}/kernel/$d"
done
chroot "$root" depmod -a "$(basename "$kmods")"

echo "== filesystem image"
used=$(du -sm "$root" | cut -f1)
size=$((used + 1536)) # free space for the tests (image stores, io writes)
mkfs.ext4 -q -F -O ^has_journal -L unroot-vm -d "$root" "$work/root.img" "${size}M"
qemu-img convert -c -O qcow2 "$work/root.img" "$out/rootfs.qcow2"
ls -l "$out"
echo "== done"
