#!/usr/bin/env bash
# deploy/helm/pilot.sh: run one `spike` command (Pilot, the admin CLI) in a
# short-lived pod of a SPIKE release, as spiffe://TD/spike/pilot:
#
#   echo 'correct horse battery' | deploy/helm/pilot.sh operator init
#   deploy/helm/pilot.sh operator status
#
# The pod runs as the release's Pilot service account with the Pilot
# labels, which the release's ClusterSPIFFEID turns into the Pilot SPIFFE
# ID (spire.pilotIdentity=true), and reads everything else from that
# account's annotations. Standard input goes to the command (a password).
# The admin token that `operator init` or `login` writes is lost with the
# pod unless PILOT_HOME_CLAIM names a PersistentVolumeClaim to keep it in.
#
# Environment: NAMESPACE (default spike), RELEASE (default spike),
# PILOT_HOME_CLAIM (optional), KUBECTL (default kubectl).
set -euo pipefail

ns=${NAMESPACE:-spike}
release=${RELEASE:-spike}
kubectl=${KUBECTL:-kubectl}
if [[ $release == *spike* ]]; then fullname=${release:0:40}; else fullname=${release}-spike; fullname=${fullname:0:40}; fi
fullname=${fullname%-}
sa=$fullname-pilot

annotation() {
	"$kubectl" -n "$ns" get serviceaccount "$sa" -o "jsonpath={.metadata.annotations.spike\.dev/$1}"
}
image=$(annotation pilot-image) || {
	echo "pilot.sh: no service account $sa in namespace $ns: is the release installed with spire.pilotIdentity=true?" >&2
	exit 1
}
nexus_url=$(annotation nexus-url)
trust_domain=$(annotation trust-domain)
socket=$(annotation endpoint-socket)
host_path=$(annotation agent-socket-host-path)

# JSON string arguments, quoted (the values above hold no quotes or
# backslashes: the chart's schema allows none).
args=""
for a in "$@"; do
	[[ $a != *[\"\\]* ]] || { echo "pilot.sh: an argument holds a quote or backslash: $a" >&2; exit 1; }
	args+="${args:+,}\"$a\""
done
if [[ -n $host_path ]]; then
	socket_volume="{\"name\":\"spire-agent-socket\",\"hostPath\":{\"path\":\"$host_path\",\"type\":\"Directory\"}}"
else
	socket_volume='{"name":"spire-agent-socket","csi":{"driver":"csi.spiffe.io","readOnly":true}}'
fi
if [[ -n ${PILOT_HOME_CLAIM:-} ]]; then
	home_volume="{\"name\":\"home\",\"persistentVolumeClaim\":{\"claimName\":\"$PILOT_HOME_CLAIM\"}}"
else
	home_volume='{"name":"home","emptyDir":{}}'
fi
name=spike-pilot-$(date +%s)
overrides=$(cat <<JSON
{
  "apiVersion": "v1",
  "metadata": {"labels": {
    "app.kubernetes.io/name": "spike",
    "app.kubernetes.io/instance": "$release",
    "app.kubernetes.io/component": "pilot"}},
  "spec": {
    "serviceAccountName": "$sa",
    "automountServiceAccountToken": false,
    "restartPolicy": "Never",
    "securityContext": {"runAsNonRoot": true, "runAsUser": 10003, "runAsGroup": 10003, "fsGroup": 10003,
      "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{
      "name": "$name",
      "image": "$image",
      "args": [$args],
      "stdin": true,
      "stdinOnce": true,
      "env": [
        {"name": "SPIKE_NEXUS_URL", "value": "$nexus_url"},
        {"name": "SPIKE_TRUST_DOMAIN", "value": "$trust_domain"},
        {"name": "SPIFFE_ENDPOINT_SOCKET", "value": "$socket"}],
      "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]}},
      "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
      "volumeMounts": [
        {"name": "spire-agent-socket", "mountPath": "/run/spire/agent-sockets", "readOnly": true},
        {"name": "home", "mountPath": "/home/spike/.spike"}]}],
    "volumes": [$socket_volume, $home_volume]}
}
JSON
)
exec "$kubectl" -n "$ns" run "$name" --rm -i --quiet --restart=Never \
	--image="$image" --overrides="$overrides"
