# The stand-in stdenv's builder (tests/nix/nixpkgs/default.nix), for nixpkgs' generic builder
# (pkgs/stdenv/generic/setup.sh): the phases in nixpkgs' order, each a variable holding shell
# code or, when unset, the default below; preX and postX hooks run by runHook; dontX skips a
# phase, doCheck and doInstallCheck enable theirs. The inputs' bin directories come first on
# PATH and their Python site-packages on PYTHONPATH (as nixpkgs' Python setup hook puts them),
# then this machine's own tools ($hostPath), which stand in for the compiler and coreutils.
# Defaults that differ from nixpkgs': no Makefile is looked for, and fixupPhase only runs its
# hooks (nixpkgs strips, runs patchelf and patchShebangs there).
set -eu -o pipefail

PATH=
PYTHONPATH=
for input in $stdenvInputs; do
    if [ -d "$input/bin" ]; then PATH=${PATH:+$PATH:}$input/bin; fi
    for site in "$input"/lib/python*/site-packages; do
        if [ -d "$site" ]; then PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$site; fi
    done
done
export PATH=${PATH:+$PATH:}$hostPath
export PYTHONPATH
# As nixpkgs' compiler wrapper's setup hook exports it.
export CC=gcc

runHook() {
    local hook=$1
    if [ -n "${!hook:-}" ]; then eval "${!hook}"; fi
}

unpackPhase() {
    runHook preUnpack
    # The source is a store directory named "source" (lib.fileset.toSource names it so).
    cp -pr -- "$src" source
    chmod -R u+w -- source
    cd source
    runHook postUnpack
}

patchPhase() { runHook prePatch; runHook postPatch; }
configurePhase() { runHook preConfigure; runHook postConfigure; }
buildPhase() { runHook preBuild; runHook postBuild; }
checkPhase() { runHook preCheck; runHook postCheck; }
installPhase() { runHook preInstall; mkdir -p "$out"; runHook postInstall; }
fixupPhase() { runHook preFixup; runHook postFixup; }
installCheckPhase() { runHook preInstallCheck; runHook postInstallCheck; }
distPhase() { :; }

runPhase() {
    local phase=$1
    echo "stand-in stdenv: $phase"
    if [ -n "${!phase:-}" ]; then eval "${!phase}"; else "$phase"; fi
}

for phase in unpackPhase patchPhase configurePhase buildPhase checkPhase installPhase fixupPhase \
        installCheckPhase ${preDistPhases:-} distPhase; do
    case $phase in
        unpackPhase) [ -z "${dontUnpack:-}" ] || continue ;;
        configurePhase) [ -z "${dontConfigure:-}" ] || continue ;;
        buildPhase) [ -z "${dontBuild:-}" ] || continue ;;
        checkPhase) [ -n "${doCheck:-}" ] || continue ;;
        installPhase) [ -z "${dontInstall:-}" ] || continue ;;
        fixupPhase) [ -z "${dontFixup:-}" ] || continue ;;
        installCheckPhase) [ -n "${doInstallCheck:-}" ] || continue ;;
    esac
    runPhase "$phase"
done
