#!/bin/sh
# Renders the Alertmanager configuration template with the receivers' URLs taken from the environment:
#   sh render.sh TEMPLATE OUTPUT
# PULSE_ALERT_WEBHOOK_URL is required; PULSE_ALERT_CRITICAL_WEBHOOK_URL defaults to it;
# PULSE_ALERT_HEARTBEAT_URL may be empty (the heartbeat receiver then delivers nowhere).
# POSIX sh and sed only, because it runs in the Alertmanager image (busybox) as well as on the host
# (`pulse infra up`, tests): one renderer, so compose and the tests run the same configuration.
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: sh render.sh TEMPLATE OUTPUT" >&2
    exit 2
fi
template=$1
output=$2

fail() {
    echo "alertmanager config: $*" >&2
    exit 2
}

webhook=${PULSE_ALERT_WEBHOOK_URL:-}
[ -n "$webhook" ] || fail "PULSE_ALERT_WEBHOOK_URL is not set (the URL that receives the alert notifications)"
critical=${PULSE_ALERT_CRITICAL_WEBHOOK_URL:-$webhook}
heartbeat=${PULSE_ALERT_HEARTBEAT_URL:-}

# An http(s) URL with a host, and nothing that would break the quoted YAML scalar or the sed expression.
check_url() {
    case $2 in
        http://?*|https://?*) ;;
        *) fail "$1 must start with http:// or https:// and name a host" ;;
    esac
    case $2 in
        *"'"*|*" "*|*"	"*) fail "$1 must not contain quotes, spaces or tabs (percent-encode them)" ;;
    esac
    if [ "$(printf '%s\n' "$2" | wc -l)" -ne 1 ]; then
        fail "$1 must be one line"
    fi
}
check_url PULSE_ALERT_WEBHOOK_URL "$webhook"
check_url PULSE_ALERT_CRITICAL_WEBHOOK_URL "$critical"
if [ -n "$heartbeat" ]; then
    check_url PULSE_ALERT_HEARTBEAT_URL "$heartbeat"
    drop='s/  #@heartbeat$//'  # keep the lines, without their tag
else
    drop='/#@heartbeat$/d'
fi

# `&`, `\` and the delimiter `|` are special in a sed replacement.
escape() {
    printf '%s' "$1" | sed 's/[\\|&]/\\&/g'
}

umask 077  # webhook URLs often carry a token
temporary="$output.tmp.$$"
trap 'rm -f "$temporary"' EXIT
sed -e "$drop" \
    -e "s|@PULSE_ALERT_WEBHOOK_URL@|$(escape "$webhook")|g" \
    -e "s|@PULSE_ALERT_CRITICAL_WEBHOOK_URL@|$(escape "$critical")|g" \
    -e "s|@PULSE_ALERT_HEARTBEAT_URL@|$(escape "$heartbeat")|g" \
    "$template" > "$temporary"
if grep -q '@PULSE_[A-Z_]*@' "$temporary"; then
    fail "$template has a placeholder render.sh does not know: $(grep -o '@PULSE_[A-Z_]*@' "$temporary" | head -n 1)"
fi
mv "$temporary" "$output"
trap - EXIT
