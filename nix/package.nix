{ lib, buildGoModule }:

buildGoModule {
  pname = "nixgate";
  version = "0.4.0";
  src = lib.cleanSource ./..;
  subPackages = [ "cmd/nixgate" ];
  # The hash of the Go module dependencies (go.sum); after changing them,
  # set lib.fakeHash, build, and copy the hash Nix reports.
  vendorHash = "sha256-gYx9WqHCET9zVkTADcfKCSe7LO/qY9hd9Tm35lE09HE=";
  ldflags = [ "-s" "-w" "-X main.version=0.4.0" ];
  # The end-to-end tests need root, sshd and a Nix of their own.
  doCheck = false;
  meta = {
    description = "The SSH front door of a Nix remote builder: only Nix's commands, safe by default";
    mainProgram = "nixgate";
    platforms = lib.platforms.linux;
  };
}
