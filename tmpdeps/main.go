package main
import (
 _ "fyne.io/fyne/v2/app"
 _ "fyne.io/fyne/v2/test"
 _ "golang.org/x/oauth2"
 _ "golang.org/x/oauth2/google"
 _ "github.com/coreos/go-oidc/v3/oidc"
 _ "github.com/zalando/go-keyring"
 _ "github.com/elazarl/goproxy"
 _ "github.com/pelletier/go-toml/v2"
 _ "github.com/gofrs/flock"
 _ "github.com/google/go-cmp/cmp"
 _ "github.com/go-jose/go-jose/v4"
 _ "github.com/godbus/dbus/v5"
 _ "github.com/zitadel/oidc/v3/pkg/op"
)
func main(){}
