"""The reproduced attacks of the outside security review (issue #17): each file is named
after its attack and speaks the real SMTP, IMAP and HTTP interfaces."""
