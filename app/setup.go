package app

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/gatepass-dev/gatepass/broker"
)

// googleIssuer pre-fills the issuer field: most users sign in with Google.
const googleIssuer = "https://accounts.google.com"

// setupFields are the setup form's fields, the keys of its error map.
const (
	fieldName    = "name"
	fieldIssuer  = "issuer"
	fieldClient  = "client_id"
	fieldSecret  = "client_secret"
	fieldGateway = "gateways"
	fieldInject  = "inject"
	fieldListen  = "listen"
	fieldForm    = "" // errors not tied to one field
)

// setupInput is what the user typed into the setup form.
type setupInput struct {
	Name, Issuer, ClientID, ClientSecret, Gateways, Listen string
	Inject                                                 broker.TokenKind
}

// validateSetup builds a config from the form and validates it exactly as
// the CLI does: the encoded TOML goes through broker.ParseConfig. It returns
// the parsed config, or the problems keyed by form field.
func validateSetup(path string, in setupInput) (*broker.Config, map[string]string) {
	errs := map[string]string{}
	add := func(field, msg string) {
		if errs[field] != "" {
			errs[field] += "; " + msg
			return
		}
		errs[field] = msg
	}
	name := strings.TrimSpace(in.Name)
	p := &broker.Profile{
		Name:         name,
		Issuer:       strings.TrimSpace(in.Issuer),
		ClientID:     strings.TrimSpace(in.ClientID),
		ClientSecret: strings.TrimSpace(in.ClientSecret),
		Inject:       in.Inject,
	}
	if p.ClientID == "" {
		add(fieldClient, "enter the OAuth client ID from your identity provider")
	}
	if strings.ContainsFunc(p.ClientSecret, unicode.IsSpace) {
		add(fieldSecret, "the client secret has a space or line break in it; paste it again as the provider shows it")
	}
	// Login's rule (Profile.CheckClientSecret), on the issuer as the config will hold it.
	if (&broker.Profile{Issuer: strings.TrimSuffix(p.Issuer, "/"), ClientSecret: p.ClientSecret}).CheckClientSecret() != nil {
		add(fieldSecret, "Google needs the client secret even with PKCE: copy it from the OAuth client (type Desktop app) in the Google Cloud console, APIs & Services > Credentials")
	}
	gws := splitList(in.Gateways)
	if len(gws) == 0 {
		add(fieldGateway, "enter at least one gateway host, e.g. api.team.example")
	}
	for _, g := range gws {
		if strings.ContainsFunc(g, unicode.IsSpace) {
			add(fieldGateway, fmt.Sprintf("%q has a space in it: put one host per line, or separate hosts with commas", g))
			continue
		}
		pat, err := broker.ParsePattern(g)
		if err != nil {
			add(fieldGateway, err.Error())
			continue
		}
		if slices.Contains(p.Gateways, pat) {
			add(fieldGateway, fmt.Sprintf("%s is listed twice; remove one", pat))
			continue
		}
		p.Gateways = append(p.Gateways, pat)
	}
	// Every other problem is found in the same round: the config's own
	// checks run on what was usable, and report on the fields not already
	// marked (a missing client ID is said once, in the form's words).
	check := *p
	if check.ClientID == "" {
		check.ClientID = "placeholder" // said above in the form's words; let the rest be checked
	}
	c := &broker.Config{Path: path, Listen: strings.TrimSpace(in.Listen), DefaultProfile: name, Profiles: []*broker.Profile{&check}}
	data, err := broker.EncodeConfig(c)
	if err != nil {
		add(fieldForm, err.Error())
		return nil, errs
	}
	parsed, err := broker.ParseConfig(path, data)
	marked := maps.Clone(errs)
	if err != nil {
		for _, e := range configErrors(err) {
			var ce *broker.ConfigError
			field, msg := fieldForm, e.Error()
			if errors.As(e, &ce) {
				field, msg = fieldForKey(ce.Key, name), ce.Msg
			}
			if marked[field] == "" {
				add(field, msg)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return parsed, nil
}

// configErrors flattens errors.Join.
func configErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// fieldForKey maps a config key (profiles.work.gateways[1]) to a form field.
func fieldForKey(key, profile string) string {
	switch key {
	case "listen":
		return fieldListen
	case "default_profile", "profiles":
		return fieldName
	}
	rest, ok := strings.CutPrefix(key, "profiles.")
	if !ok {
		return fieldForm
	}
	i := strings.LastIndex(rest, ".")
	if i < 0 {
		return fieldName // the profile table itself: its name
	}
	field := rest[i+1:]
	if j := strings.IndexByte(field, '['); j >= 0 {
		field = field[:j]
	}
	switch field {
	case "issuer", "client_id", "client_secret", "gateways", "inject":
		return field
	}
	return fieldForm
}

// splitList splits on commas and line breaks and trims each item; a space
// inside an item stays, for the caller to report ("api team.example" is a
// typo, not two hosts).
func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// setupForm is the first-run form: one profile, validated like the CLI.
type setupForm struct {
	u      *ui
	obj    fyne.CanvasObject
	name   *widget.Entry
	issuer *widget.Entry
	client *widget.Entry
	secret *widget.Entry
	gws    *widget.Entry
	inject *widget.RadioGroup
	listen *widget.Entry
	errs   map[string]*widget.Label
	save   *widget.Button
	demo   *widget.Button
	back   *widget.Button
	status *widget.Label
	body   *fyne.Container
}

var injectChoices = []string{"ID token (id_token)", "Access token (access_token)"}

func newSetupForm(u *ui) *setupForm {
	f := &setupForm{u: u, errs: map[string]*widget.Label{}}
	f.name = widget.NewEntry()
	f.name.SetText("work")
	f.issuer = widget.NewEntry()
	f.issuer.SetText(googleIssuer)
	f.client = widget.NewEntry()
	f.client.SetPlaceHolder("1234-abc.apps.googleusercontent.com")
	f.secret = widget.NewPasswordEntry()
	f.secret.SetPlaceHolder("GOCSPX-… (Google Desktop clients need it)")
	f.gws = widget.NewMultiLineEntry()
	f.gws.SetPlaceHolder("api.team.example\n*.gw.team.example")
	f.gws.SetMinRowsVisible(3)
	f.inject = widget.NewRadioGroup(injectChoices, nil)
	f.inject.Horizontal = true
	f.inject.SetSelected(injectChoices[0])
	f.listen = widget.NewEntry()
	f.listen.SetText(broker.DefaultListen)
	if u.opts.Listen != "" {
		f.listen.SetText(u.opts.Listen)
	}

	grid := container.New(layout.NewFormLayout())
	row := func(label, field string, w fyne.CanvasObject) {
		e := widget.NewLabel("")
		e.Importance = widget.DangerImportance
		e.Wrapping = fyne.TextWrapWord
		e.Hide()
		f.errs[field] = e
		grid.Add(widget.NewLabelWithStyle(label, fyne.TextAlignTrailing, fyne.TextStyle{Bold: true}))
		grid.Add(container.NewVBox(w, e))
	}
	row("Profile name", fieldName, f.name)
	row("Issuer", fieldIssuer, f.issuer)
	row("Client ID", fieldClient, f.client)
	row("Client secret", fieldSecret, f.secret)
	row("Gateway hosts", fieldGateway, f.gws)
	row("Token to send", fieldInject, f.inject)
	row("Proxy address", fieldListen, f.listen)
	formErr := widget.NewLabel("")
	formErr.Importance = widget.DangerImportance
	formErr.Wrapping = fyne.TextWrapWord
	formErr.Hide()
	f.errs[fieldForm] = formErr

	f.status = widget.NewLabel("")
	f.status.Wrapping = fyne.TextWrapWord
	f.status.Hide()
	f.save = widget.NewButtonWithIcon("Save configuration", theme.DocumentSaveIcon(), f.submit)
	f.save.Importance = widget.HighImportance
	f.demo = widget.NewButtonWithIcon("Try the demo", theme.MediaPlayIcon(), f.startDemo)
	if u.opts.StartDemo == nil {
		f.demo.Hide()
	}
	f.back = widget.NewButton("Back", func() {
		u.inSetup = false
		u.win.SetContent(u.mainView)
	})
	if u.br == nil {
		f.back.Hide()
	}

	intro := widget.NewLabel("Set up a profile: the OAuth client gatepass signs in with, and the gateway hosts that get its token. " +
		"Or try gatepass first with the built-in demo identity provider and gateway.")
	intro.Wrapping = fyne.TextWrapWord
	where := widget.NewLabel(whereText(u.opts.ConfigPath))
	where.Wrapping = fyne.TextWrapWord
	if configExists(u.opts.ConfigPath) {
		where.Importance = widget.WarningImportance
	}
	f.body = container.NewVBox(
		widget.NewLabelWithStyle("Welcome to gatepass", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		intro,
		grid,
		formErr,
		where,
		container.NewHBox(f.save, f.demo, layout.NewSpacer(), f.back),
		f.status,
	)
	f.obj = container.NewVScroll(f.body)
	return f
}

func (f *setupForm) input() setupInput {
	kind := broker.IDToken
	if f.inject.Selected == injectChoices[1] {
		kind = broker.AccessToken
	}
	return setupInput{
		Name: f.name.Text, Issuer: f.issuer.Text, ClientID: f.client.Text, ClientSecret: f.secret.Text,
		Gateways: f.gws.Text, Listen: f.listen.Text, Inject: kind,
	}
}

// showErrors puts each problem under its field and clears the others.
func (f *setupForm) showErrors(errs map[string]string) {
	for field, l := range f.errs {
		if msg := errs[field]; msg != "" {
			l.SetText(msg)
			l.Show()
		} else {
			l.Hide()
		}
	}
	f.body.Refresh() // re-lay out the rows whose error appeared or went
}

func (f *setupForm) setStatus(msg string, imp widget.Importance) {
	f.status.Importance = imp
	f.status.SetText(msg)
	f.status.Show()
	f.body.Refresh()
}

func (f *setupForm) submit() {
	u := f.u
	cfg, errs := validateSetup(u.opts.ConfigPath, f.input())
	f.showErrors(errs)
	if cfg == nil {
		f.setStatus("Fix the fields marked in red, then save again.", widget.DangerImportance)
		return
	}
	if u.opts.WriteConfig == nil {
		f.setStatus("This build cannot write a configuration; save it by hand.", widget.DangerImportance)
		return
	}
	backup, err := u.opts.WriteConfig(cfg)
	if err != nil {
		f.setStatus("Could not save the configuration: "+err.Error()+". Check that the folder is writable and try again.", widget.DangerImportance)
		return
	}
	u.notices.set(noticeConfig, nil)
	saved := "Saved to " + u.opts.ConfigPath + "."
	if backup != "" {
		saved += " The previous file is kept as " + backup + "."
	}
	if u.opts.Open == nil {
		f.setStatus(saved+" Quit and start gatepass again to use it.", widget.SuccessImportance)
		return
	}
	f.setStatus(saved+" Starting…", widget.SuccessImportance)
	f.save.Disable()
	open := u.opts.Open
	go func() {
		br, px, err := open(u.ctx, cfg)
		u.do(func() {
			f.save.Enable()
			if err != nil {
				f.setStatus("Saved, but gatepass could not start with it: "+err.Error(), widget.DangerImportance)
				return
			}
			u.attach(br, px)
		})
	}()
}

func (f *setupForm) startDemo() {
	u := f.u
	f.demo.Disable()
	f.setStatus("Starting the demo identity provider and gateway…", widget.MediumImportance)
	start := u.opts.StartDemo
	go func() {
		br, px, d, err := start(u.ctx)
		u.do(func() {
			f.demo.Enable()
			if err != nil {
				f.setStatus("Could not start the demo: "+err.Error(), widget.DangerImportance)
				return
			}
			f.status.Hide()
			u.demo = d // before attach: the demo's throwaway CA needs no notice
			u.attach(br, px)
			u.showDemo(d)
		})
	}()
}

// showDemo tells how to reach a running demo from a terminal: the CLI and
// curl need its config (GATEPASS_CONFIG) and the proxy's address.
func (u *ui) showDemo(d *Demo) {
	if d == nil {
		return
	}
	export := "export GATEPASS_CONFIG=" + ShellQuote(d.ConfigPath)
	copyExport := widget.NewButtonWithIcon("Copy export line", theme.ContentCopyIcon(), func() {
		u.app.Clipboard().SetContent(export)
	})
	// Two lines at most: the profile card below must stay in view.
	// (The card shows the demo's issuer, and its curl line the gateway.)
	u.notices.set(noticeDemo, &problem{
		Title:  "Demo running on this machine",
		Detail: "In a terminal: " + export + " — then gatepass status or gatepass token. Its config and sign-in go when gatepass quits.",
		Info:   true,
	}, copyExport)
}

// whereText says where the form writes, and, when a file is there already
// (one with an error, say), that saving replaces it and keeps a copy.
func whereText(path string) string {
	if configExists(path) {
		return "A configuration already exists at " + path + ". Saving replaces it with this one profile; " +
			"the current file is kept next to it as a backup (" + filepath.Base(path) + ".bak-…), so nothing in it is lost."
	}
	return "The configuration is written to " + path
}

func configExists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}

// showSetup switches the window to the setup form.
func (u *ui) showSetup() {
	if u.setup == nil {
		u.setup = newSetupForm(u)
	}
	u.inSetup = true
	u.win.SetContent(container.NewBorder(u.notices.box, nil, nil, nil, u.setup.obj))
}
