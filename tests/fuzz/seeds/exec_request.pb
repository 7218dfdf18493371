ls-l
Ab €*main