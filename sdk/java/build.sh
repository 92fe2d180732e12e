#!/usr/bin/env bash
# Offline build of the Java SDK with javac against Debian's jars (Maven Central is not reachable on
# the build machines). Usage: sdk/java/build.sh [test|jar|bench]. Needs: openjdk-17-jdk-headless,
# junit5, libokhttp-java, libspring-web-java (scripts/test-sdks installs them).
set -euo pipefail
cd "$(dirname "$0")"
J=/usr/share/java
OUT=${JAVA_OUT:-build}
CP="$J/okhttp.jar:$J/okio.jar:$J/spring3-web.jar:$J/spring3-core.jar:$J/commons-logging.jar"
TCP="$CP:$J/junit-jupiter-api.jar:$J/apiguardian-api.jar:$J/opentest4j.jar:$J/junit-platform-commons.jar"
rm -rf "$OUT"
javac -Xlint:all,-path -Werror --release 17 -d "$OUT/main" -cp "$CP" src/main/java/dev/keygate/sdk/*.java
jar --create --file "$OUT/keygate-sdk-0.1.0.jar" -C "$OUT/main" .
case "${1:-test}" in
  jar) ls -l "$OUT/keygate-sdk-0.1.0.jar" ;;
  test)
    javac --release 17 -d "$OUT/test" -cp "$OUT/main:$TCP" src/test/java/dev/keygate/sdk/*.java
    java -Dkeygate.vectors=../../docs/vectors -jar "$J/junit-platform-console-standalone.jar" \
      -cp "$OUT/main:$OUT/test:$CP" --select-package dev.keygate.sdk --disable-banner --details=summary \
      --fail-if-no-tests
    ;;
  bench)
    javac --release 17 -d "$OUT/bench" -cp "$OUT/main" bench/Bench.java
    java -cp "$OUT/main:$OUT/bench" Bench
    ;;
esac
