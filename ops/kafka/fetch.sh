#!/usr/bin/env bash
# Fetch the pinned Kafka broker jars (pom.xml) from Maven Central into lib/.
#
# Idempotent: lib/.complete holds the sha256 of the pom.xml the jars came
# from; when it matches, nothing is fetched. Jars land in a scratch folder
# first and replace lib/ in one rename, so an interrupted fetch leaves no
# half-filled lib/ behind.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib=$here/lib
stamp=$lib/.complete
want=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)

if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    echo "kafka: jars present in ${lib#"$PWD"/}"
    exit 0
fi

if ! command -v mvn >/dev/null; then
    echo "kafka: mvn not found (Debian package maven)" >&2
    exit 1
fi

scratch=$(mktemp -d "$here/lib.fetch.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

echo "kafka: fetching broker jars from Maven Central"
mvn -q -B -Dstyle.color=never -f "$here/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$scratch"

count=$(find "$scratch" -name '*.jar' | wc -l)
if ! compgen -G "$scratch/kafka_2.13-*.jar" >/dev/null; then
    echo "kafka: fetch gave no kafka_2.13 jar ($count jars)" >&2
    exit 1
fi
echo "$want" >"$scratch/.complete"
chmod 755 "$scratch"
rm -rf "$lib"
mv "$scratch" "$lib"
trap - EXIT
echo "kafka: $count jars in ${lib#"$PWD"/}"
